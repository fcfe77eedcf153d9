"""Executors: how a recipe's cells are run.

`local`: in this process, or in `jobs` worker processes of this machine (torch's threads
divided between them). `ray`: each uncached cell is a Ray task with its own CPUs and
GPUs, on a running cluster (`address`) or a local one started for the run; the runs
directory must be on storage every node sees. Both leave caching, resume and failure
records to the engine, through the `ExecutionContext` they are given (`cmp.api`).
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import annotated_types as at

from cmp import hookimpl
from cmp.api import CellSpec, CellTask, CmpError, ExecutionContext, PositiveInt, Register, RunResult

NonNegativeFloat = Annotated[float, at.Ge(0)]
PositiveFloat = Annotated[float, at.Gt(0)]

RAY_MISSING = "the ray executor needs Ray, which is not installed: pip install 'cmp-compare[ray]'"


class LocalExecutor:
    """Cells in this process, or `jobs` at a time in worker processes of this machine."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, cells: Sequence[CellSpec], context: ExecutionContext) -> list[RunResult]:
        if self.jobs <= 1 or len(cells) <= 1:
            return context.run_in_order(cells)
        done, todo = context.pending(cells)
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=spawn) as pool:
            futures = {i: pool.submit(context.task(cells[i], threads)) for i in todo}
            for i, future in futures.items():
                done[i] = future.result()
                context.on_done(done[i])
        return [done[i] for i in range(len(cells))]


class RayExecutor:
    """Each uncached cell as a Ray task asking for `cpus_per_cell` CPUs and `gpus_per_cell` GPUs."""

    def __init__(self, address: str | None, cpus_per_cell: float, gpus_per_cell: float, processes_per_cell: int | None) -> None:
        self.address = address
        self.cpus = cpus_per_cell
        self.gpus = gpus_per_cell
        self.processes = processes_per_cell or (int(gpus_per_cell) if gpus_per_cell >= 2 else 1)

    def run(self, cells: Sequence[CellSpec], context: ExecutionContext) -> list[RunResult]:
        done, todo = context.pending(cells)
        if not todo:
            return [done[i] for i in range(len(cells))]
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            self._connect(ray)
        try:
            done.update(self._run_tasks(ray, cells, todo, context))
        finally:
            if started_here:
                ray.shutdown()
        return [done[i] for i in range(len(cells))]

    def _connect(self, ray: Any) -> None:
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", configure_logging=True)
        except Exception as exc:  # no cluster at the address, a version mismatch...
            where = f"--address {self.address}" if self.address else "--executor ray"
            raise CmpError(f"cannot start or reach a Ray cluster: {type(exc).__name__}: {exc}".splitlines()[0], where=where) from None

    def _run_tasks(self, ray: Any, cells: Sequence[CellSpec], todo: list[int], context: ExecutionContext) -> dict[int, RunResult]:
        marker = context.out_dir / f".cmp-driver-{uuid.uuid4().hex}"
        context.out_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("written by the cmp driver; a worker that cannot read it cannot see the runs directory\n")
        task = ray.remote(_ray_task).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        threads = max(1, int(self.cpus) // self.processes)
        refs = {task.remote(context.task(cells[i], threads, self.processes), str(context.out_dir), str(marker)): i
                for i in todo}
        results: dict[int, RunResult] = {}
        try:
            waiting = list(refs)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                i = refs[ready[0]]
                results[i] = self._outcome(ray, ready[0], cells[i], context)
                context.on_done(results[i])
        except KeyboardInterrupt:
            _cancel_unfinished(ray, [ref for ref, i in refs.items() if i not in results])
            raise
        finally:
            marker.unlink(missing_ok=True)
        return results

    def _outcome(self, ray: Any, ref: Any, cell: CellSpec, context: ExecutionContext) -> RunResult:
        """The task's result; a task that died or could not run becomes a failed result."""
        try:
            result: RunResult = ray.get(ref)
            return result
        except Exception as exc:
            cause = getattr(exc, "cause", None) or exc
            reason = cause.message if isinstance(cause, CmpError) else f"the Ray task failed: {type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
            return context.failed(cell, reason)


def _cancel_unfinished(ray: Any, refs: list[Any]) -> None:
    """Cancel the tasks not finished yet; the finished ones keep their results.

    Not forced: Ray raises KeyboardInterrupt in a running task, which then ends as
    cancelled. A forced cancel kills the worker, and when that task finishes at the same
    moment Ray 2.x aborts the driver ("Tried to complete task that was not pending")."""
    if not refs:
        return
    _, unfinished = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in unfinished:
        ray.cancel(ref, force=False)


def _ray_task(task: CellTask, out_dir: str, marker: str) -> RunResult:
    """A cell on a Ray worker (on one process per GPU it was given, when more than one),
    after checking that the runs directory is the driver's."""
    if not Path(marker).is_file():
        import socket

        raise CmpError(
            f"the runs directory {out_dir} is not visible on node {socket.gethostname()}: "
            "put it on storage every node sees (a shared file system)",
            where="--out",
        )
    return task()


def local(*, jobs: PositiveInt = 1) -> LocalExecutor:
    """Cells in this process, or `jobs` at a time in worker processes of this machine."""
    return LocalExecutor(jobs)


def ray(
    *, address: str | None = None, cpus_per_cell: PositiveFloat = 1.0, gpus_per_cell: NonNegativeFloat = 0.0,
    processes_per_cell: PositiveInt | None = None,
) -> RayExecutor:
    """Cells as Ray tasks on a cluster (`address`, e.g. ray://HOST:10001 or auto) or a local one.

    A cell given several GPUs trains on one process per GPU with DDP (`processes_per_cell`
    defaults to the GPU count; set it to train a cell on several CPU processes)."""
    try:
        import ray as _  # noqa: F401  (installed? say so now, before any work)
    except ImportError:
        raise CmpError(RAY_MISSING, where="--executor ray") from None
    return RayExecutor(address, cpus_per_cell, gpus_per_cell, processes_per_cell)


@hookimpl
def cmp_register_executors(register: Register) -> None:
    register("local", local)
    register("ray", ray)
