"""tools/mutation_summary.py writes one page: the standing table, then only the survivors
that tools/mutation_equivalent.toml does not explain, with their diffs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tools.mutation_summary import main

CODES = {
    "cmp/a.py": {"a.x_f__mutmut_1": 1, "a.x_f__mutmut_2": 0, "a.x_f__mutmut_3": 0, "a.x_f__mutmut_4": 36,
                 "a.x_f__mutmut_5": 0, "a.x_f__mutmut_6": None},
    "plugins/b.py": {"b.x_g__mutmut_1": 3, "b.x_g__mutmut_2": 33, "b.x_g__mutmut_10": 0},
}
"""a: killed, equivalent, not testable, timeout, not explained, not checked; b: killed,
no tests (not explained), survived (not explained: listed after b's mutant 2, by number)."""


def project(root: Path) -> Path:
    (root / "tools").mkdir()
    (root / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["cmp/a.py", "plugins/b.py"]\n')
    (root / "tools" / "mutation_equivalent.toml").write_text(textwrap.dedent("""
        [equivalent]
        "a.x_f__mutmut_2" = "same result"
        "b.x_g__mutmut_1" = "killed anyway: not counted as equivalent"
        [not_testable]
        "a.x_f__mutmut_3" = "GPU only"
    """))
    for file, codes in CODES.items():
        meta = root / "mutants" / (file + ".meta")
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes}))
    return root / "page.md"


def rows(page: str) -> dict[str, list[str]]:
    table = [line for line in page.splitlines() if line.startswith("| ") and not line.startswith("| module")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}


def test_the_page_counts_each_outcome_and_lists_only_the_unexplained(tmp_path: Path) -> None:
    out = project(tmp_path)
    main(["--out", str(out), "--note", "Made for a test."], root=tmp_path,
         diffs=lambda name, file: f"-old {name}\n+new")
    page = out.read_text()
    table = rows(page)
    # mutants, killed (+ timeout), equivalent, not testable, not explained, score, of the non-equivalent
    assert table["cmp/a.py"] == ["6", "2", "1", "1", "1", "40.0 %", "50.0 %"]  # 2/5 tested; 2/(5-1)
    assert table["plugins/b.py"] == ["3", "1", "0", "0", "2", "33.3 %", "33.3 %"]
    assert table["**all**"] == ["9", "3", "1", "1", "3", "37.5 %", "42.9 %"]  # 3/8; 3/7
    assert "1 mutants are not checked yet" in page and "Made for a test." in page
    listed = page.split("## Mutants not explained", 1)[1]
    assert [line.split("`")[1] for line in listed.splitlines() if line.startswith("- ")] == [
        "a.x_f__mutmut_5", "b.x_g__mutmut_2", "b.x_g__mutmut_10"]
    assert "(plugins/b.py, no tests)" in listed and "  -old b.x_g__mutmut_10" in listed
    assert "a.x_f__mutmut_2" not in listed and "a.x_f__mutmut_3" not in listed  # explained: in the .toml only


def test_with_every_survivor_explained_the_list_says_none(tmp_path: Path) -> None:
    out = project(tmp_path)
    (tmp_path / "tools" / "mutation_equivalent.toml").write_text(textwrap.dedent("""
        [equivalent]
        "a.x_f__mutmut_2" = "same"
        "a.x_f__mutmut_5" = "same"
        "b.x_g__mutmut_2" = "same"
        "b.x_g__mutmut_10" = "same"
        [not_testable]
        "a.x_f__mutmut_3" = "GPU only"
    """))
    main(["--out", str(out)], root=tmp_path, diffs=lambda name, file: "")
    page = out.read_text()
    assert page.split("## Mutants not explained", 1)[1].strip() == "None."
    assert rows(page)["**all**"][4] == "0"


def test_the_committed_page_is_one_page_with_the_readmes_figures() -> None:
    page = (Path(__file__).resolve().parents[2] / "tools" / "mutation-summary.md").read_text()
    assert len(page.splitlines()) < 120
    assert rows(page)["**all**"] == ["5954", "5579", "291", "84", "0", "93.7 %", "98.5 %"]
