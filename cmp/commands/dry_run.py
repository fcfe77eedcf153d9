"""`cmp run --dry-run`: the plan of a run and its time estimate, without training or writing anything.

Every cell and baseline with its plan (cached, train, resume, compute), every data set
loaded to see that it is here (never downloaded), an estimate of the time from the
timings of cells and baselines that finished before in the same runs directory, and per
cell the resolved values in which the methods differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult
from cmp.commands import echo
from cmp.config.cell import Cell
from cmp.config.differences import method_differences
from cmp.engine.baselines import BaselineContext, baseline_key, baseline_specs
from cmp.engine.build import build
from cmp.engine.data import train_count
from cmp.engine.rundir import estimate_seconds, finished_results
from cmp.engine.runner import Runner
from cmp.errors import CmpError
from cmp.report.summary import format_table


def dry_run(runner: Runner, cells: list[Cell], recipe_dir: Path, report_dir: Path) -> int:
    """Print the plan: cells, baselines, where the methods differ, the estimate, the data.

    Exit code 2 when a data set is missing (each named on stderr), else 0.
    """
    images, missing = _check_data(runner, cells)
    timings = finished_results(recipe_dir)
    cell_rows: list[list[str]] = []
    to_do: list[float | None] = []  # the estimated seconds of each cell and baseline not cached
    for cell in cells:
        plan = runner.plan(cell)
        if cell.train.epochs == 0 and plan == "train":
            plan = "evaluate"  # an evaluate-only cell: no training
        if cell.data.dataset in missing:
            plan += " (data missing)"
        if plan != "cached":
            key = _data_key(cell)
            to_do.append(estimate_seconds(cell, images[key], timings) if key in images else None)
        cell_rows.append([cell.name, cell.key(), plan, "" if plan == "cached" else duration(to_do[-1])])
    print(format_table(cell_rows, ["cell", "key", "plan", "estimate"]))

    base_rows, base_seconds = _baseline_plan(runner, cells, missing)
    to_do += base_seconds
    if base_rows:
        print()
        print(format_table(base_rows, ["baseline", "key", "plan", "estimate"]))

    _print_differences(cells)
    to_compute = sum(1 for row in base_rows if row[2] != "cached")
    to_evaluate = sum(1 for row in cell_rows if row[2] == "evaluate")
    to_train = sum(1 for row in cell_rows if row[2] not in ("cached", "evaluate"))
    evaluating = f", {to_evaluate} to evaluate only" if to_evaluate else ""
    print(f"\n{len(cells)} cell(s), {to_train} to train{evaluating}; {len(base_rows)} baseline(s), {to_compute} to compute")
    print(estimate_line(to_do))
    datasets = {cell.data.dataset: images.get(_data_key(cell)) for cell in cells}
    for name, count in datasets.items():
        print(f"data: {name}: " + ("not found here" if name in missing else f"found ({count} training images)"))
    print(f"run directories under {recipe_dir}; report: {report_dir}/")
    for problem in missing.values():
        echo(f"cmp: error: {problem}")
    return 2 if missing else 0


def _print_differences(cells: list[Cell]) -> None:
    """Per cell, the resolved values in which the methods differ (nothing when they do not)."""
    differences = method_differences(cells)
    if any(differences):
        print("\nWhere the methods differ, as resolved ((preset 'x'): a value the preset set, kept although "
              "the recipe names that component again):")
        width = max(len(c.name) for c in cells)
        for cell, row in zip(cells, differences):
            print(f"  {cell.name:<{width}}  " + "  ".join(f"{k}={v}" for k, v in row.items()))


def _data_key(cell: Cell) -> str:
    """A cell's data section as text: cells with the same one load the same data."""
    return json.dumps(cell.data.model_dump(), sort_keys=True, default=str)


def _check_data(runner: Runner, cells: list[Cell]) -> tuple[dict[str, int], dict[str, str]]:
    """Load every data set the cells name, without downloading: (training images per data
    section (`_data_key`), missing data set -> the error saying where it was looked for)."""
    images: dict[str, int] = {}
    missing: dict[str, str] = {}
    for cell in cells:
        key = _data_key(cell)
        if key in images or cell.data.dataset in missing:
            continue
        try:
            data = runner.data_for(cell.data.model_copy(update={"download": False}))
            if cell.data.download:  # found here, so loading it as the run would downloads nothing
                data = runner.data_for(cell.data)
        except CmpError as exc:
            problem = str(exc)
            if cell.data.download:
                off = "downloading is off (data.download: false)"
                would = "`cmp run` would try to download it (a dry run never does)"
                problem = problem.replace(off, would) if off in problem else f"{problem}; {would}"
            missing[cell.data.dataset] = problem
            continue
        images[key] = train_count(data)
    return images, missing


def _baseline_plan(runner: Runner, cells: list[Cell], missing: dict[str, str]) -> tuple[list[list[str]], list[float | None]]:
    """One row per distinct baseline (name, key, plan, estimate), and the estimated seconds
    of those not cached (None: nothing like it has finished yet)."""
    rows: list[list[str]] = []
    seconds: list[float | None] = []
    seen: set[tuple[str, str]] = set()
    infos: dict[str, Any] = {}  # the data's statistics, computed once per data set, not once per baseline
    for spec in baseline_specs(cells):
        name = spec.choice.name
        if spec.cell.data.dataset in missing:
            key, plan = "?", "data missing"
        else:
            try:
                context = BaselineContext(runner, spec)
                if _data_key(spec.cell) in infos:
                    context.info = infos[_data_key(spec.cell)]
                infos[_data_key(spec.cell)] = context.info
                key = baseline_key(build(runner.registry, spec.choice), context)
                plan = "cached" if _read_baseline(context.dir / f"{name}-{key}.json") else "compute"
            except Exception as exc:  # a baseline plugin's bug: the run would record it as failed
                key, plan = "?", f"fails: {type(exc).__name__}: {exc}"
        if (name, key) in seen:
            continue
        seen.add((name, key))
        spent = None
        if plan != "cached":
            spent = _baseline_seconds(runner.out_dir / "baselines", name)
            seconds.append(spent)
        rows.append([name, key, plan, "" if plan == "cached" else duration(spent)])
    return rows, seconds


def _read_baseline(path: Path) -> BaselineResult | None:
    """A finished baseline result at `path`, or None."""
    try:
        result = BaselineResult.from_json(path.read_text())
    except (OSError, ValueError):
        return None
    return result if result.ok else None


def _baseline_seconds(folder: Path, name: str) -> float | None:
    """The median wall time of this baseline's finished results of any configuration, or None."""
    times = sorted(r.wall_time_s for p in folder.glob(f"{name}-*.json") if (r := _read_baseline(p)) is not None)
    return times[len(times) // 2] if times else None


def duration(seconds: float | None) -> str:
    """`~40 s`, `~12 min`, `~1.5 h`; `?` when there is no estimate."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"~{max(1.0, seconds):.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def estimate_line(to_do: list[float | None]) -> str:
    """The plan's total time, and what it leaves out."""
    if not to_do:
        return "estimate: nothing to train or compute; everything is cached"
    known = [s for s in to_do if s is not None]
    if not known:
        return "estimate: no estimate (nothing has finished in this runs directory to time it by)"
    text = f"estimate: about {duration(sum(known)).lstrip('~')}, from the timings of finished cells and baselines"
    if len(known) < len(to_do):
        text += f"; plus {len(to_do) - len(known)} marked ? that nothing finished yet can time"
    return text
