"""Running a recipe's cells in order, or in parallel worker processes (`cmp run --jobs N`).

Each worker process loads the plugins and the data itself and runs whole cells; torch's
threads are divided between the workers so that N jobs do not oversubscribe the cores.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from cmp.api.loader import load_plugins
from cmp.api.results import RunResult
from cmp.config.cells import Cell
from cmp.engine.runner import Runner


def _run_in_worker(plugins: str | None, modules: Sequence[str], out_dir: Path, cell: Cell, threads: int) -> RunResult:
    torch.set_num_threads(threads)
    runner = Runner(load_plugins(plugins, modules), out_dir)
    return runner.run_cell(cell)


def run_cells(
    runner: Runner, cells: Sequence[Cell], jobs: int = 1,
    plugins: str | None = None, modules: Sequence[str] = (),
    on_done: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Results in the order of `cells`; cached cells cost nothing, failed ones are recorded."""
    if jobs <= 1 or len(cells) <= 1:
        results = []
        for cell in cells:
            results.append(runner.run_cell(cell))
            if on_done:
                on_done(results[-1])
        return results
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_run_in_worker, plugins, list(modules), runner.out_dir, cell, threads) for cell in cells]
        results = []
        for future in futures:
            results.append(future.result())
            if on_done:
                on_done(results[-1])
    return results
