"""`cmp run RECIPE`: resolve the recipe, run its cells, compute the baselines, write the manifest and the report.

With `--nproc N` this process launches N workers running the same command (less `--nproc`);
each joins the process group, every one trains each cell, and only the main one writes.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmp.api.loader import Plugins
from cmp.api.results import BaselineResult, RunResult
from cmp.commands import echo
from cmp.commands.dry_run import dry_run
from cmp.commands.report_folders import DEFAULT_REPORTS, report_name
from cmp.config.cells import Cell, resolve, resolve_executor
from cmp.config.recipe import Override, Recipe, load_recipe
from cmp.distributed import Processes, finish_processes, init_processes, launch, launched
from cmp.engine.baselines import baseline_specs, compute_baselines
from cmp.engine.build import build, resolve_device
from cmp.engine.cell_run import check_weights
from cmp.engine.environment import environment
from cmp.engine.executors import run_cells
from cmp.engine.rundir import MANIFEST, older_results, write_json
from cmp.engine.runner import Runner
from cmp.errors import CmpError
from cmp.report import write_report
from cmp.report.summary import summary_table


@dataclass(frozen=True)
class RunRequest:
    """`cmp run` as its command line asked for it (`cmp.cli` builds it from the flags)."""

    recipe: Path
    flag_overrides: list[Override]
    """Recipe keys set by flags (`--device`, `--executor`, `--jobs`...), each named by its flag."""
    set_overrides: list[str]
    """`--set KEY=VALUE`, in order; they name a trial's report folder."""
    out: Path
    jobs: int
    nproc: int
    dry_run: bool
    reports: Path | None
    argv: list[str]
    """The arguments after `cmp`, as given: what `--nproc` workers run again."""
    plugin_names: str | None
    plugin_modules: list[str]

    @property
    def overrides(self) -> list[Override]:
        """Every override, the flags' first: `--set` is the more specific."""
        return [*self.flag_overrides, *self.set_overrides]

    @property
    def command_line(self) -> str:
        """`cmp run ...` as typed (quoted for a shell): the manifest's and the report's record."""
        return "cmp " + shlex.join(self.argv)


def run_command(plugins: Plugins, request: RunRequest) -> int:
    """Run every cell of the recipe (or plan them, with --dry-run); exit code 0, or 1 when a cell failed."""
    if request.jobs < 1:
        raise CmpError("must be at least 1", where=f"--jobs {request.jobs}")
    if request.nproc < 1:
        raise CmpError("must be at least 1", where=f"--nproc {request.nproc}")
    if request.nproc > 1 and not launched():
        load_recipe(request.recipe, request.overrides)  # a bad recipe is one error here, not one per worker
        return launch(request.nproc, _without_nproc(request.argv))
    recipe = load_recipe(request.recipe, request.overrides)
    processes = init_processes(recipe.model.train.device, recipe.model.train.backend)
    if processes.distributed and request.jobs > 1:
        raise CmpError("runs each cell on every process; use --jobs 1 with --nproc or torchrun", where=f"--jobs {request.jobs}")
    cells = resolve(recipe, plugins.registry)
    runner = Runner(plugins, request.out, echo=echo, processes=processes)
    if not processes.is_main:
        return _run_as_worker(runner, cells, request.dry_run)
    recipe_dir = request.out / recipe.name
    older = older_results(recipe_dir)
    if older:
        echo(f"cmp: note: {older} result(s) under {recipe_dir} were written by an older cmp; "
             "their format changed, so those cells are computed again")
    started = time.perf_counter()
    name = report_name(recipe, cells, plugins.registry, request.recipe, request.flag_overrides, request.set_overrides)
    report_dir = request.reports / recipe.name if request.reports else DEFAULT_REPORTS / name
    if request.dry_run:
        return dry_run(runner, cells, recipe_dir, report_dir)
    if report_dir.name != recipe.name:
        echo(f"cmp: note: --set changed the configuration, so the report goes to {report_dir}/, "
             f"not {DEFAULT_REPORTS / recipe.name}/ (the recipe's own; --reports DIR chooses)")
    executor = build(plugins.registry, resolve_executor(recipe, plugins.registry))
    for cell in cells:  # every data set is found and checked before any training starts
        runner.data_for(cell.data)
    check_weights(runner.services, cells)  # and every weights file, against its encoder
    echo(f"cmp: {recipe.name}: {len(cells)} cell(s) into {recipe_dir}")
    results = run_cells(runner, cells, executor, plugins=request.plugin_names, modules=request.plugin_modules,
                        on_done=_report_cell)
    finish_processes()  # the cells are done on every process; baselines and the report are the main one's
    baselines = compute_baselines(runner, baseline_specs(cells))
    manifest = _manifest(recipe, cells, baselines, request, processes, name, time.perf_counter() - started)
    write_json(recipe_dir / MANIFEST, manifest)
    paths = write_report(recipe.name, results, baselines, report_dir, manifest, recipe.model.description,
                         hooks=plugins.hook)
    print()
    print(summary_table(results, baselines))
    print(f"\nreport: {paths['markdown']} (and report.html, results.csv)\nruns:   {recipe_dir}")
    return 0 if all(r.ok for r in results) else 1


def _manifest(recipe: Recipe, cells: list[Cell], baselines: list[BaselineResult], request: RunRequest,
              processes: Processes, report: str, wall_time_s: float) -> dict[str, Any]:
    """manifest.json: what ran, how it was asked for, on what, and where its report went."""
    return {
        "recipe": recipe.name, "description": recipe.model.description,
        "command": request.command_line, "runs_dir": str(request.out / recipe.name),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment(resolve_device(cells[0].train.device), processes.world_size),
        "cells": [c.key() for c in cells], "baselines": [json.loads(b.to_json()) for b in baselines],
        "overrides": list(request.set_overrides), "report": report,
        "claims": [c.model_dump() for c in recipe.model.claims], "reference": recipe.model.reference,
        "wall_time_s": wall_time_s,
    }


def _run_as_worker(runner: Runner, cells: list[Cell], dry: bool) -> int:
    """A process other than the main one: train every cell with the others, write nothing."""
    if dry:
        return 0
    for cell in cells:
        runner.data_for(cell.data)
    results = run_cells(runner, cells)
    finish_processes()
    return 0 if all(r.ok for r in results) else 1


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line a worker runs: the same, less `--nproc N`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _report_cell(result: RunResult) -> None:
    """A finished cell's line on stderr: `cmp: CELL: ok`, `cached`, or `failed (reason)`."""
    echo(f"cmp: {result.cell}: {'cached' if result.cached else result.status}"
         + (f" ({result.reason})" if result.reason else ""))
