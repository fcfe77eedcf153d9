"""Running a recipe's cells: the executor component and what every executor shares.

How cells are run is a slot (`executors`): `local` runs them in this process or in
worker processes of this machine (`--jobs N`), `ray` as tasks of a Ray cluster. Every
executor gets the same `ExecutionContext`, and the semantics stay in the engine, not in
the executor: cached cells never leave the driver (`pending`), a cell's run directory
handles resume and failure (`run_cell_in_worker` calls the same `Runner.run_cell`), and
`on_done` reports each cell as it finishes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.multiprocessing as mp

from cmp.api.contracts import Executor
from cmp.api.loader import load_plugins
from cmp.api.results import RunResult
from cmp.config.cells import Cell
from cmp.distributed import finish_processes, init_processes
from cmp.engine.rundir import RunDirectory, read_result
from cmp.engine.runner import Runner


@dataclass
class ExecutionContext:
    """What an executor is given besides the cells.

    runner:  the driver's runner (run directories, cache, the plugins' hooks)
    plugins: the third-party plugin selection (`--plugins`) other processes load
    modules:  extra plugin modules (`-p`) other processes import
    on_done: called in the driver with each result as its cell finishes
    """

    runner: Runner
    plugins: str | None = None
    modules: Sequence[str] = ()
    on_done: Callable[[RunResult], None] = field(default=lambda result: None)

    @property
    def out_dir(self) -> Path:
        return self.runner.out_dir


def pending(cells: Sequence[Cell], context: ExecutionContext) -> tuple[dict[int, RunResult], list[int]]:
    """Cached results by cell index (reported at once), and the indices still to run."""
    cached: dict[int, RunResult] = {}
    todo: list[int] = []
    for i, cell in enumerate(cells):
        found = context.runner.run_dir(cell).cached()
        if found is None:
            todo.append(i)
        else:
            cached[i] = found
            context.on_done(found)
    return cached, todo


def run_cell_in_worker(
    plugins: str | None, modules: Sequence[str], out_dir: Path, cell: Cell, threads: int | None
) -> RunResult:
    """One cell in another process (a pool worker, a Ray task): its own plugins, data and runner."""
    if threads:
        torch.set_num_threads(threads)
    runner = Runner(load_plugins(plugins, modules), out_dir)
    return runner.run_cell(cell)


def run_cell_on_processes(
    plugins: str | None, modules: Sequence[str], out_dir: Path, cell: Cell, processes: int, threads: int | None
) -> RunResult:
    """One cell trained by `processes` processes of this machine together (DDP), as
    `cmp run --nproc` does: what a Ray task asking for several GPUs runs."""
    if processes <= 1:
        return run_cell_in_worker(plugins, modules, out_dir, cell, threads)
    group = mp.start_processes(
        _cell_process, args=(processes, _free_port(), plugins, list(modules), out_dir, cell, threads),
        nprocs=processes, start_method="spawn", join=False,
    )
    try:
        while not group.join(timeout=1.0):  # wakes each second, so an interrupt is seen
            pass
    except BaseException:  # interrupted or cancelled (a Ray cancel is a KeyboardInterrupt): end the others
        for process in group.processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=30)
        raise
    result = read_result(RunDirectory(out_dir, cell).result_path)  # written by process 0
    if result is None:
        raise RuntimeError(f"the {processes} processes of cell {cell.name} ended without a result")
    return result


def _cell_process(
    rank: int, world: int, port: int, plugins: str | None, modules: list[str], out_dir: Path, cell: Cell,
    threads: int | None,
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    if threads:
        torch.set_num_threads(threads)
    processes = init_processes(cell.train.device, cell.train.backend)
    try:
        Runner(load_plugins(plugins, modules), out_dir, processes=processes).run_cell(cell)
    finally:
        finish_processes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_in_order(cells: Sequence[Cell], context: ExecutionContext) -> list[RunResult]:
    """Each cell in this process, one after another (also how every process of a
    distributed run goes through a sweep)."""
    results = []
    for cell in cells:
        results.append(context.runner.run_cell(cell))
        context.on_done(results[-1])
    return results


def run_cells(runner: Runner, cells: Sequence[Cell], executor: Executor | None = None, **context: object) -> list[RunResult]:
    """Results in the order of `cells`, run by `executor` (in this process, in order, by default)."""
    full = ExecutionContext(runner, **context)  # type: ignore[arg-type]
    return run_in_order(cells, full) if executor is None else executor.run(list(cells), full)
