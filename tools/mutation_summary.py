"""Write tools/mutation-summary.md, the one page on mutation testing, from the results mutmut
keeps in mutants/ (tools/mutation.sh calls it after every run).

The page says how to run it, then per module: mutants, killed (a timeout counts as killed),
equivalent and not testable here (both explained by name in tools/mutation_equivalent.toml),
not explained, and the scores; last, every survivor that is not explained, with its diff:
the work left. Explained mutants keep their reasons in the .toml, not on the page.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest, which this tool runs, depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
KILLED, SURVIVED, NO_TESTS, TIMEOUT, NOT_CHECKED, OTHER = (
    "killed", "survived", "no tests", "timeout", "not checked", "other"
)

HOW_TO_RUN = """\
Whether the tests would notice a wrong line of code: mutmut changes one thing at a time in
the modules `[tool.mutmut]` in pyproject.toml lists (an operator, a constant, a dropped
argument), and runs their tests against each such *mutant*; a test that fails kills it.
It takes hours, so it is not part of CI.

## How to run it

    tools/mutation.sh                      # every mutant not yet tested (results are kept in mutants/)
    tools/mutation.sh 'plugins.losses*'    # these: the ones not tested yet or whose function changed
    tools/mutation.sh NAME...              # exactly these again, after new tests (module.x_function__mutmut_N)

It needs the `mutation` extra (`pip install -e '.[test,mutation]'`), runs one child process
with one thread per process, and then rewrites this page (`tools/mutation_summary.py`).
Results accumulate in `mutants/` over runs, so a mutant is tested again only when its
function changed or it is named on the command line; `mutmut show NAME` prints its diff.
`tools/mutmut_alias.py` makes `cmp_plugins` import the mutated `plugins/`.

A survivor that no test can tell from the code is *equivalent*; one that changes what
happens only on a GPU or in a child process (DDP ranks, DataLoader workers), where mutmut
does not look, is *not testable here*. Both are listed by name, each with why, in
[`tools/mutation_equivalent.toml`](mutation_equivalent.toml). A survivor in neither list is
*not explained*: it is listed at the end of this page with its diff, the work left.
"""

SCORES = """\
"Score": killed / mutants tested, the equivalent and not testable ones counted as not
killed; "of the non-equivalent": killed / (mutants tested - equivalent), the usual mutation
score (issue 16's goal: 90 %). A timeout (the tests hang or run 30 times longer than usual)
counts as killed."""


def status_of(code: int | None) -> str:
    if code is None:
        return NOT_CHECKED
    if code in (1, 3, 37):
        return KILLED
    if code == 0:
        return SURVIVED
    if code in (5, 33):
        return NO_TESTS
    if code in (24, -24, 36, 152, 255):
        return TIMEOUT
    return OTHER


@dataclass
class Standing:
    """One module's (or all modules') mutants by outcome."""

    module: str
    mutants: int = 0
    killed: int = 0
    equivalent: int = 0
    not_testable: int = 0
    not_checked: int = 0
    unexplained: list[tuple[str, str]] = field(default_factory=list)
    """(mutant, status) of each survivor in neither list of the .toml."""

    def add(self, other: Standing) -> None:
        self.mutants += other.mutants
        self.killed += other.killed
        self.equivalent += other.equivalent
        self.not_testable += other.not_testable
        self.not_checked += other.not_checked
        self.unexplained += other.unexplained

    def row(self, bold: bool = False) -> str:
        tested = self.mutants - self.not_checked
        name = f"**{self.module}**" if bold else self.module
        cells = [name, self.mutants, self.killed, self.equivalent, self.not_testable, len(self.unexplained),
                 pct(self.killed, tested), pct(self.killed, tested - self.equivalent)]
        return "| " + " | ".join(str(c) for c in cells) + " |"


def standing(module: str, codes: Mapping[str, int | None], equivalent: Mapping[str, str],
             not_testable: Mapping[str, str]) -> Standing:
    """Sort a module's mutants: killed (or timed out), explained, not explained, not checked."""
    result = Standing(module, mutants=len(codes))
    for name, code in sorted(codes.items(), key=lambda kv: natural(kv[0])):
        status = status_of(code)
        if status in (KILLED, TIMEOUT):
            result.killed += 1
        elif status == NOT_CHECKED:
            result.not_checked += 1
        elif name in equivalent:
            result.equivalent += 1
        elif name in not_testable:
            result.not_testable += 1
        else:
            result.unexplained.append((name, status))
    return result


def render(rows: list[Standing], header: list[str], note: str, diff_of: Callable[[str, str], str]) -> str:
    """The page: how to run it, the standing table, then the survivors not explained."""
    total = Standing("all")
    for row in rows:
        total.add(row)
    out = ["# Mutation testing of the core modules", "", HOW_TO_RUN, "## Where each module stands", "", *header, "",
           "| module | mutants | killed (+ timeout) | equivalent | not testable here | not explained | score"
           " | of the non-equivalent |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
           *(row.row() for row in rows), total.row(bold=True), "", SCORES]
    if total.not_checked:
        out += ["", f"{total.not_checked} mutants are not checked yet (left out of the scores): "
                    "`tools/mutation.sh` with no argument runs them."]
    if note:
        out += ["", note.strip()]
    out += ["", "## Mutants not explained", ""]
    if not total.unexplained:
        out.append("None.")
    for row in rows:
        for name, status in row.unexplained:
            out.append(f"- `{name}` ({row.module}, {status})")
            diff = diff_of(name, row.module)
            if diff:
                out += ["  ```diff", *("  " + line for line in diff.splitlines()), "  ```"]
    return "\n".join(out) + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}  # nproc honours OMP_NUM_THREADS
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True, env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(os.cpu_count())


def load_results(root: Path, files: list[str]) -> dict[str, dict[str, int | None]]:
    """Per mutated file, mutmut's exit code of each mutant (None: not run yet)."""
    results: dict[str, dict[str, int | None]] = {}
    for file in files:
        meta = root / "mutants" / (file + ".meta")
        results[file] = json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}
    return results


def diff_of(name: str, file: str) -> str:
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        lines = get_diff_for_mutant(name, path=file).splitlines()
    except Exception as exc:  # an out-of-date mutants/ copy: still list the mutant
        return f"(no diff: {type(exc).__name__}: {exc})"
    return "\n".join(line for line in lines[2:] if line[:1] in "+-")


def main(argv: list[str] | None = None, root: Path = ROOT, diffs: Callable[[str, str], str] = diff_of) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--command", default="tools/mutation.sh")
    parser.add_argument("--started", default=None)
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--out", default=str(root / "tools" / "mutation-summary.md"))
    parser.add_argument("--note", default="", help="Markdown put under the table: how the results were made")
    parser.add_argument("--files", nargs="+", help="only these of only_mutate (e.g. the modules one run covered)")
    args = parser.parse_args(argv)

    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    files = [f for f in config["only_mutate"] if not args.files or f in args.files]
    equivalent_file = root / "tools" / "mutation_equivalent.toml"
    explained = tomllib.loads(equivalent_file.read_text()) if equivalent_file.is_file() else {}
    results = load_results(root, files)
    rows = [standing(f, results[f], explained.get("equivalent", {}), explained.get("not_testable", {})) for f in files]

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"- written: {now}" + (f" (this run started {args.started}, took {args.seconds} s)" if args.started else ""),
        f"- command: `{args.command}` (mutmut {version()}, one child, `OMP_NUM_THREADS=1`)",
        f"- machine: {nproc()} CPUs (`nproc`), {cpu_model()}, Python {platform.python_version()}",
    ]
    with contextlib.chdir(root):  # mutmut reads mutants/ from the working directory
        page = render(rows, header, args.note, diffs)
    Path(args.out).write_text(page)
    print(f"wrote {args.out}")
    return 0


def natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("__mutmut_")
    return (head, int(number) if number.isdigit() else 0)


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("mutmut")
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
