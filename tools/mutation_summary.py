"""Write tools/mutation-summary.md from the results mutmut keeps in mutants/ (see tools/mutation.sh).

Per module: mutants, killed, survived, no tests, timeouts, not yet checked, and the
score ((killed + timeout) / mutants tested; and counting the mutants explained as
equivalent in tools/mutation_equivalent.toml). Then every mutant that was not killed, with its diff
and the reason it is equivalent where one is recorded.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tomllib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED, SURVIVED, NO_TESTS, TIMEOUT, NOT_CHECKED, OTHER = (
    "killed", "survived", "no tests", "timeout", "not checked", "other"
)


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


def load_results(files: list[str]) -> dict[str, dict[str, int | None]]:
    import json

    results: dict[str, dict[str, int | None]] = {}
    for file in files:
        meta = ROOT / "mutants" / (file + ".meta")
        results[file] = json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}
    return results


def diff_of(name: str, file: str) -> str:
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        lines = get_diff_for_mutant(name, path=file).splitlines()
    except Exception as exc:  # an out-of-date mutants/ copy: still list the mutant
        return f"(no diff: {type(exc).__name__}: {exc})"
    changed = [line for line in lines[2:] if line[:1] in "+-" ]
    return "\n".join(changed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--command", default="tools/mutation.sh")
    parser.add_argument("--started", default=None)
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "tools" / "mutation-summary.md"))
    parser.add_argument("--note", default="", help="Markdown put under the header: how the results were made")
    parser.add_argument("--files", nargs="+", help="only these of only_mutate (e.g. the modules one run covered)")
    args = parser.parse_args()

    os.chdir(ROOT)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    files = [f for f in config["only_mutate"] if not args.files or f in args.files]
    equivalent_file = ROOT / "tools" / "mutation_equivalent.toml"
    explained = tomllib.loads(equivalent_file.read_text()) if equivalent_file.is_file() else {}
    equivalent: dict[str, str] = explained.get("equivalent", {})
    not_testable: dict[str, str] = explained.get("not_testable", {})
    results = load_results(files)

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Mutation testing of the core modules",
        "",
        f"- written: {now}" + (f" (this run started {args.started}, took {args.seconds} s)" if args.started else ""),
        f"- command: `{args.command}` (mutmut {version()}, one child, `OMP_NUM_THREADS=1`)",
        f"- machine: {nproc()} CPUs (`nproc`), {cpu_model()}, Python {platform.python_version()}",
        "- configuration: `[tool.mutmut]` in pyproject.toml (files mutated, tests run);"
        " results accumulate in `mutants/` over runs, so a mutant is tested again only when its"
        " function changed or it is named on the command line",
        "- score: (killed + timeout) / mutants tested; \"with equivalent\" also counts the mutants explained below as"
        " equivalent (not those marked \"not testable here\")",
        "",
        *([args.note, ""] if args.note else []),
        "| module | mutants | killed | survived | no tests | timeout | not checked | score | with equivalent |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals: Counter[str] = Counter()
    not_killed: list[tuple[str, str, str]] = []
    for file in files:
        codes = results[file]
        counts = Counter(status_of(c) for c in codes.values())
        n = len(codes)
        eq = sum(1 for name, c in codes.items() if status_of(c) != KILLED and name in equivalent)
        totals.update(counts)
        totals["mutants"] += n
        totals["equivalent"] += eq
        tested = n - counts[NOT_CHECKED]
        caught = counts[KILLED] + counts[TIMEOUT]
        out.append(
            f"| {file} | {n} | {counts[KILLED]} | {counts[SURVIVED]} | {counts[NO_TESTS]} | {counts[TIMEOUT]}"
            f" | {counts[NOT_CHECKED]} | {pct(caught, tested)} | {pct(caught + eq, tested)} |"
        )
        for name, code in sorted(codes.items(), key=lambda kv: natural(kv[0])):
            status = status_of(code)
            if status not in (KILLED, NOT_CHECKED):
                not_killed.append((file, name, status))
    tested = totals["mutants"] - totals[NOT_CHECKED]
    caught = totals[KILLED] + totals[TIMEOUT]
    out.append(
        f"| **all** | {totals['mutants']} | {totals[KILLED]} | {totals[SURVIVED]} | {totals[NO_TESTS]}"
        f" | {totals[TIMEOUT]} | {totals[NOT_CHECKED]} | {pct(caught, tested)}"
        f" | {pct(caught + totals['equivalent'], tested)} |"
    )
    out += [
        "",
        "Scores are over the mutants tested (\"not checked\" left out); a timeout (the tests hang or"
        " run 30 times longer than usual) counts as caught.",
        "",
    ]

    out += ["## Mutants not killed", ""]
    if not not_killed:
        out.append("None.")
    current = None
    for file, name, status in not_killed:
        if file != current:
            out += ["", f"### {file}", ""]
            current = file
        reason = equivalent.get(name)
        if status == TIMEOUT:
            label = "caught: the tests hang or run far longer"
        elif reason:
            label = f"equivalent: {reason}"
        elif name in not_testable:
            label = f"not killed, not testable here: {not_testable[name]}"
        else:
            label = "**not explained**"
        out.append(f"- `{name}` ({status}) {label}")
        diff = diff_of(name, file)
        if diff:
            out += ["  ```diff", *("  " + line for line in diff.splitlines()), "  ```"]
    Path(args.out).write_text("\n".join(out) + "\n")
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
