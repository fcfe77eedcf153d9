"""The layers of docs/design.md hold: the import contracts in pyproject.toml, and no import cycle.

The contracts are import-linter's (`[tool.importlinter]`): cmp's packages import only the
layers below them, the engine's runner only what runs below it, the built-in plugins only
what a third party may (`cmp.api`, `cmp.nn`, `cmp.streaming`), and cmp never its plugins.
Each check is also shown to fail, on a copy of the code with a forbidden import added.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

PUBLIC_TO_PLUGINS = {"api", "nn", "streaming", "weights"}
"""cmp's packages a plugin may import (docs/plugins.md); every other one is forbidden to them."""

LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the contracts of `root`/pyproject.toml, importing the packages from `root`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", LINT, "pyproject.toml", "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def broken(output: str) -> str:
    """The report's part that names each broken contract and its imports."""
    return output[output.find("Broken contracts"):] if "Broken contracts" in output else output


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, broken(result.stdout + result.stderr)


FORBIDDEN = [  # (file of the copy, the import added, what the report must name)
    ("cmp/api/slots.py", "import cmp.engine.runner", "cmp.api.slots -> cmp.engine.runner"),
    ("cmp/engine/cell_run.py", "import cmp.engine.runner", "cmp.engine.cell_run -> cmp.engine.runner"),
    ("cmp_plugins/losses.py", "import cmp.engine.learner", "cmp_plugins.losses -> cmp.engine.learner"),
    ("cmp_plugins/datasets.py", "import cmp.errors", "cmp_plugins.datasets -> cmp.errors"),
    ("cmp/config/recipe.py", "import cmp_plugins.losses", "cmp.config.recipe -> cmp_plugins.losses"),
]


def test_each_contract_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "cmp", tmp_path / "cmp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "plugins", tmp_path / "cmp_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for file, line, _ in FORBIDDEN:
        path = tmp_path / file
        path.write_text(path.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    report = broken(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = " ".join(result.stdout.split())  # the report wraps long contract names
    for contract in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]:
        assert f"{' '.join(contract['name'].split())} BROKEN" in summary, contract["id"]
    for file, _, named in FORBIDDEN:
        assert named in report, (file, report)


def test_every_package_of_cmp_is_public_to_plugins_or_forbidden_to_them() -> None:
    contracts = {c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}
    layered = {name.strip() for layer in contracts["layers"]["layers"] for name in layer.split("|")}
    forbidden = {name.removeprefix("cmp.") for name in contracts["plugins-public-api"]["forbidden_modules"]}
    assert layered - PUBLIC_TO_PLUGINS == forbidden, "a package of cmp is neither public to plugins nor forbidden to them"
    assert PUBLIC_TO_PLUGINS <= layered


def import_cycles(*packages: str) -> list[str]:
    """One line per set of modules that import each other in a circle, naming the imports
    and their lines (imports made only for type checking are left out: they never run)."""
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True, cache_dir=None)
    return [_describe(graph, sorted(component)) for component in _strongly_connected(graph) if len(component) > 1]


def _strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's strongly connected components of the import graph, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == module:
                        break
                found.append(component)
    return found


def _describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """`a -> b (l.3) -> a (l.7)`: one circle through the component's first module."""
    start = component[0]
    following = sorted(set(graph.find_modules_directly_imported_by(start)) & set(component))[0]
    chain = (start, *(graph.find_shortest_chain(importer=following, imported=start) or ()))
    steps = [start]
    for importer, imported in zip(chain, chain[1:], strict=False):  # consecutive pairs
        lines = sorted(d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported))
        steps.append(f"{imported} (l.{', '.join(map(str, lines))})")
    return "import cycle: " + " -> ".join(steps)


def test_no_module_of_cmp_or_its_plugins_imports_itself_round_a_circle() -> None:
    cycles = import_cycles("cmp", "cmp_plugins")
    assert not cycles, "\n".join(cycles)


def test_the_cycle_check_names_a_circle_and_ignores_type_checking_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "circles"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import os\n\nfrom circles import b\n")
    (package / "b.py").write_text("from circles.c import thing\n")
    (package / "c.py").write_text("import circles.a\n\nthing = 1\n")
    (package / "d.py").write_text("import circles.e\n")
    (package / "e.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import circles.d\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert import_cycles("circles") == [
        "import cycle: circles.a -> circles.b (l.3) -> circles.c (l.1) -> circles.a (l.1)"
    ]
