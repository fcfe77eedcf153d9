"""`cmp report RUNS`: rebuild the report of every recipe's finished runs under RUNS, from their result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmp.api.loader import Plugins
from cmp.api.results import BaselineResult
from cmp.commands.report_folders import report_dir_for
from cmp.engine.rundir import MANIFEST, RESULT, read_result
from cmp.errors import CmpError
from cmp.report import write_report


def report_command(plugins: Plugins, runs: Path, out: Path | None) -> int:
    """One report per recipe found under `runs`, into OUT/NAME/ (or the folder `cmp run` chose); exit code 0."""
    recipe_dirs = _recipe_dirs(runs)
    if not recipe_dirs:
        raise CmpError("holds no finished runs (no */result.json)", where=str(runs))
    for recipe_dir in recipe_dirs:
        manifest = json.loads((recipe_dir / MANIFEST).read_text()) if (recipe_dir / MANIFEST).is_file() else {}
        keys = set(manifest.get("cells", []))
        results = []
        for path in sorted(recipe_dir.glob(f"*/{RESULT}")):
            result = read_result(path)
            if result is None:
                raise CmpError("not a cmp result (or of an unknown format)", where=str(path))
            if not keys or result.key in keys:
                results.append(result)
        name = manifest.get("recipe", recipe_dir.name)
        baselines = [_with_reference(BaselineResult.model_validate(b), b, plugins) for b in manifest.get("baselines", [])]
        out_dir = out / name if out else report_dir_for(name, manifest, results)
        paths = write_report(name, results, baselines, out_dir, manifest or None, manifest.get("description"),
                             hooks=plugins.hook)
        print(f"report: {paths['markdown']} ({len(results)} cells)")
    return 0


def _with_reference(result: BaselineResult, raw: dict[str, Any], plugins: Plugins) -> BaselineResult:
    """A baseline recorded before baselines said whether they are a floor or a ceiling gets
    its component's `reference` (floor when the component is not installed)."""
    if "reference" in raw:
        return result
    try:
        component = plugins.registry.get("baselines", result.baseline).build()
    except Exception:  # not installed, or needs parameters: keep the default
        return result
    reference = "ceiling" if getattr(component, "reference", "floor") == "ceiling" else "floor"
    return result.model_copy(update={"reference": reference})


def _recipe_dirs(runs: Path) -> list[Path]:
    """`runs` itself when it is one recipe's directory, else its recipe sub-directories."""
    if not runs.is_dir():
        return []
    if (runs / MANIFEST).is_file() or any(runs.glob(f"*/{RESULT}")):
        return [runs]
    return sorted(d for d in runs.iterdir() if d.is_dir() and any(d.glob(f"*/{RESULT}")))
