"""The README stays a newcomer's page: exactly two quick-start commands (the second being
what CI runs), every recipe in one results table whose figures are the ones its docs page
gives in full, every docs page linked, and short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 150
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")


def section(title: str) -> str:
    """The README's text from `## title` to the next `## ` heading."""
    return README.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def quick_start_commands() -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section("Quick start"), flags=re.S)]


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[0] == ".ci/setup && .venv/bin/cmp run recipes/simclr_vs_moco.yaml"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]


def results_rows() -> list[list[str]]:
    lines = [line for line in section("Results").splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[1:]]


def test_every_recipe_has_a_row_of_the_results_table() -> None:
    recipes = {f"recipes/{path.name}" for path in (ROOT / "recipes").glob("*.yaml")}
    linked = {m for row in results_rows() for m in re.findall(r"\((recipes/[\w.]+\.yaml)\)", row[0])}
    assert linked == recipes
    assert not re.search(r"@[A-Z0-9]+@", README.read_text()), "an unfilled placeholder"


def test_every_figure_of_the_results_table_is_one_its_docs_page_gives() -> None:
    """The table is a summary: a figure that is not on docs/recipes.md was rounded
    differently, copied wrong, or has no source."""
    full = set(NUMBER.findall((ROOT / "docs" / "recipes.md").read_text()))
    for row in results_rows():
        text = re.sub(r"\]\([^)]*\)", "]", " | ".join(row[1:4]))  # not the links' targets
        missing = [n for n in NUMBER.findall(text) if n not in full]
        assert not missing, (row[0], missing)


def test_every_docs_page_is_linked_and_the_readme_stays_short() -> None:
    readme = README.read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name
    assert len(readme.splitlines()) <= MAX_LINES, "reference material belongs in docs/, the README is a newcomer's page"
