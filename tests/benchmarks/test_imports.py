"""The benchmarks import each other without a circle: what several share is in
`benchmarks.common` (and `benchmarks.machine`), which import no benchmark."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
HELPERS = {"common", "machine"}


def imported_benchmarks(path: Path) -> set[str]:
    """The `benchmarks.X` modules a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("benchmarks."))
    return found


def graph() -> dict[str, set[str]]:
    return {path.stem: imported_benchmarks(path) for path in BENCHMARKS.glob("*.py") if path.stem != "__init__"}


def test_the_helpers_import_no_benchmark() -> None:
    imports = graph()
    for helper in HELPERS:
        assert imports[helper] <= HELPERS - {helper}, (helper, imports[helper])


def test_no_two_benchmarks_import_each_other_through_any_path() -> None:
    imports = graph()

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(imports.get(start, ()))
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(imports.get(name, ()))
        return seen

    circles = sorted(name for name in imports if name in reachable(name))
    assert circles == [], f"benchmarks in an import circle: {circles}"


def test_the_graph_is_read() -> None:
    imports = graph()
    assert "common" in imports["lightly_comparison"] and "lightly_comparison" in imports["accelerator"]
