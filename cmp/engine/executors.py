"""Running a recipe's cells: the executor component and what every executor shares.

How cells are run is a slot (`executors`): `local` runs them in this process or in
worker processes of this machine (`--jobs N`), `ray` as tasks of a Ray cluster. Every
executor gets the same `ExecutionContext` (the protocol `cmp.api.ExecutionContext`), and
the semantics stay in the engine, not in the executor: cached cells never leave the
driver (`pending`), a cell's run directory handles resume and failure (a `CellTask`
calls the same `Runner.run_cell` in another process), and `on_done` reports each cell
as it finishes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
import torch.multiprocessing as mp

from cmp.api.contexts import CellSpec, Executor
from cmp.api.loader import load_plugins
from cmp.api.results import RunResult
from cmp.config.cells import Cell
from cmp.distributed import finish_processes, init_processes
from cmp.engine.rundir import RunDirectory, read_result
from cmp.engine.runner import Runner


@dataclass
class ExecutionContext:
    """What an executor is given besides the cells (`cmp.api.ExecutionContext`).

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

    def pending(self, cells: Sequence[CellSpec]) -> tuple[dict[int, RunResult], list[int]]:
        """Cached results by cell index (reported at once), and the indices still to run."""
        cached: dict[int, RunResult] = {}
        todo: list[int] = []
        for i, cell in enumerate(cells):
            found = self.runner.run_dir(_cell(cell)).cached()
            if found is None:
                todo.append(i)
            else:
                cached[i] = found
                self.on_done(found)
        return cached, todo

    def run_in_order(self, cells: Sequence[CellSpec]) -> list[RunResult]:
        """Each cell in this process, one after another (also how every process of a
        distributed run goes through a sweep)."""
        results = []
        for cell in cells:
            results.append(self.runner.run_cell(_cell(cell)))
            self.on_done(results[-1])
        return results

    def task(self, cell: CellSpec, threads: int | None = None, processes: int = 1) -> CellTask:
        """`cell` as a picklable task for another process (a pool worker, a Ray task)."""
        return CellTask(self.plugins, tuple(self.modules), self.out_dir, _cell(cell), threads, processes)

    def failed(self, cell: CellSpec, reason: str) -> RunResult:
        """A failed result for a cell whose task ended without one, written to its run directory."""
        resolved = _cell(cell)
        result = RunResult(recipe=resolved.recipe, method=resolved.method, cell=resolved.name, key=resolved.key(),
                           sweep=resolved.config()["sweep"], config=resolved.config(), status="failed", reason=reason)
        rundir = self.runner.run_dir(resolved)
        rundir.path.mkdir(parents=True, exist_ok=True)
        rundir.write_result(result)
        return result


def _cell(cell: CellSpec) -> Cell:
    """The engine's cell behind a `CellSpec` an executor hands back: executors only hold
    the cells they were given, which are `Cell`s."""
    return cast(Cell, cell)


@dataclass(frozen=True)
class CellTask:
    """One cell run in another process, with its own plugins, data and runner; picklable
    (`cmp.api.CellTask`). On `processes` > 1 processes of that machine together (DDP)."""

    plugins: str | None
    modules: tuple[str, ...]
    out_dir: Path
    cell: Cell
    threads: int | None = None
    processes: int = 1

    def __call__(self) -> RunResult:
        return run_cell_on_processes(self.plugins, self.modules, self.out_dir, self.cell, self.processes, self.threads)


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


def run_cells(
    runner: Runner, cells: Sequence[Cell], executor: Executor | None = None, plugins: str | None = None,
    modules: Sequence[str] = (), on_done: Callable[[RunResult], None] = lambda result: None,
) -> list[RunResult]:
    """Results in the order of `cells`, run by `executor` (in this process, in order, by default)."""
    context = ExecutionContext(runner, plugins, modules, on_done)
    return context.run_in_order(cells) if executor is None else executor.run(list(cells), context)
