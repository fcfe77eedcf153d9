"""A pytest plugin for mutation runs: `cmp_plugins` is the mutated `plugins` package.

mutmut names a mutant after the file it is in (`plugins/losses.py` -> `plugins.losses`)
and its trampolines compare that name with the module a mutated function was imported
as. cmp installs `plugins/` as `cmp_plugins`, so without this plugin the tests would
import the *unmutated* `plugins/` of the checkout through the editable install (and even
a copy imported as `cmp_plugins.losses` would never switch its mutants on).

Loaded with `-p tools.mutmut_alias` (see `[tool.mutmut]` in pyproject.toml), it puts a
finder in front of every other one: `cmp_plugins` and `cmp_plugins.X` are the very
module objects `plugins` and `plugins.X`, imported from the mutated copy that mutmut put
first on `sys.path` (`mutants/`). A module imported under both names is one module, so a
registry, an isinstance check or a monkeypatch sees the same objects either way.

Outside a mutation run (no `mutants/plugins` first on the path) it does nothing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ALIAS = "cmp_plugins"
REAL = "plugins"


class _Existing(importlib.abc.Loader):
    """Hands back an already imported module instead of executing a file again."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # importlib set the alias's spec on it: keep the real one


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real = REAL + fullname[len(ALIAS):]
        module = importlib.import_module(real)
        spec = importlib.machinery.ModuleSpec(fullname, _Existing(module), is_package=hasattr(module, "__path__"))
        return spec


def mutated_plugins_folder() -> Path | None:
    """`mutants/plugins` when it comes first on the path (a mutmut run), else None."""
    for entry in sys.path:
        folder = Path(entry or ".").resolve()
        if (folder / REAL / "__init__.py").is_file():
            return folder / REAL if folder.name == "mutants" else None
    return None


def install() -> bool:
    if mutated_plugins_folder() is None:
        return False
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
    return True


install()  # at import (`-p` loads this before any conftest), so no test imports plugins first


def pytest_configure(config: Any) -> None:
    install()
    plugins = sys.modules.get(ALIAS)
    if plugins is not None and plugins is not sys.modules.get(REAL):
        raise RuntimeError(
            f"{ALIAS} was imported from {getattr(plugins, '__file__', '?')} before the alias was in place: "
            "a mutation run would test the unmutated plugins"
        )
