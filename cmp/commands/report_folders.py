"""Which folder under reports/ a report goes to, so a report is never replaced by another configuration's.

`reports/NAME/` is the report of the recipe as written. A run whose `--set` overrides
change the resolved configuration (a short trial: fewer epochs, a subset) reports into
`reports/NAME-<hash of the overrides>/` instead (`report_name`, recorded in the manifest),
and `cmp report` writes where the run did unless a report of other cells is there
(`report_dir_for`); `--reports` / `--out` choose the folder outright.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cmp.api.registry import Registry
from cmp.api.results import RunResult
from cmp.commands import echo
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import Override, Recipe, load_recipe
from cmp.errors import CmpError

DEFAULT_REPORTS = Path("reports")
"""Where reports go unless `--reports` / `--out` says otherwise."""


def report_name(recipe: Recipe, cells: list[Cell], registry: Registry, recipe_path: Path,
                flag_overrides: list[Override], set_overrides: list[str]) -> str:
    """The report's folder under reports/: the recipe's name, or `NAME-<hash of the --set
    overrides>` when they change what is run (a different cell or baseline), so a short
    trial never replaces the report of the recipe as written. `cells` are the resolved
    cells with every override; the recipe is resolved again with the flags' alone."""
    if not set_overrides:
        return recipe.name
    try:
        own = resolve(load_recipe(recipe_path, flag_overrides), registry)
    except CmpError:  # the recipe is only valid with the overrides: certainly another configuration
        own = []
    if _signature(own) == _signature(cells):
        return recipe.name
    digest = hashlib.sha256("\n".join(sorted(set_overrides)).encode()).hexdigest()[:6]
    return f"{recipe.name}-{digest}"


def _signature(cells: list[Cell]) -> list[str]:
    """What a report shows, as comparable text: each cell's key and its baselines."""
    return sorted(json.dumps([c.key(), [b.to_dict() for b in c.baselines]], sort_keys=True) for c in cells)


def report_dir_for(name: str, manifest: dict[str, Any], results: list[RunResult]) -> Path:
    """Where `cmp report` writes without `--out`: the folder `cmp run` chose (reports/NAME, or
    reports/NAME-<hash> after --set), unless a report of other cells is there already; then
    reports/NAME-<hash of these cells>, so rebuilding never replaces another configuration's report."""
    folder = DEFAULT_REPORTS / manifest.get("report", name)
    keys = sorted(r.key for r in results)
    there = _reported_keys(folder)
    if there is None or there == keys:
        return folder
    target = DEFAULT_REPORTS / f"{name}-{hashlib.sha256(' '.join(keys).encode()).hexdigest()[:6]}"
    echo(f"cmp: note: {folder}/ holds the report of other cells; this one goes to {target}/ (--out DIR chooses)")
    return target


def _reported_keys(folder: Path) -> list[str] | None:
    """The cell keys of the report in `folder` (its results.json), or None when there is none."""
    try:
        cells = json.loads((folder / "results.json").read_text()).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None
    return sorted(str(c.get("key")) for c in cells if isinstance(c, dict))
