"""Running one cell: its run directory around it, its training and evaluation inside.

`Runner.run_cell` reads top to bottom: reuse a cached result, else prepare the run
directory, train and evaluate (`cmp.engine.cell_run`), record the outcome as a
`RunResult` (a failure too, with its reason), and tell the lifecycle plugins.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cmp.api.loader import Plugins
from cmp.api.results import RunInfo, RunResult
from cmp.config.cells import Cell
from cmp.config.recipe import DataSection
from cmp.devices import require_device
from cmp.distributed import SINGLE, Processes, broadcast, process_device
from cmp.engine.build import resolve_device
from cmp.engine.cell_run import CellServices, train_and_evaluate
from cmp.engine.data import Data, load_data
from cmp.engine.environment import environment
from cmp.engine.rundir import RunDirectory
from cmp.errors import CheckpointError, CmpError


class Runner:
    """Runs cells into `out_dir`, loading each data set once per process."""

    def __init__(
        self, plugins: Plugins, out_dir: Path, echo: Callable[[str], None] = print, processes: Processes = SINGLE,
    ) -> None:
        self.registry = plugins.registry
        self.processes = processes
        self.hooks = plugins.hook if processes.is_main else SilentHooks()
        self.out_dir = out_dir
        self.echo = echo if processes.is_main else _quiet
        self._data: dict[str, Data] = {}

    @property
    def services(self) -> CellServices:
        """What a cell's work is given: this runner's registry, hooks, processes, messages and data."""
        return CellServices(self.registry, self.hooks, self.processes, self.echo, self.data_for)

    def data_for(self, data: DataSection) -> Data:
        """The data set of a `data` section (in memory or streamed), loaded once per process."""
        key = json.dumps(data.model_dump(), sort_keys=True, default=str)
        if key not in self._data:
            self._data[key] = load_data(data, self.registry)
        return self._data[key]

    def run_dir(self, cell: Cell) -> RunDirectory:
        return RunDirectory(self.out_dir, cell)

    def plan(self, cell: Cell) -> str:
        """What `run_cell` would do: reuse a result, resume a checkpoint, retry, or train."""
        return self.run_dir(cell).plan()

    def run_cell(self, cell: Cell, device_name: str | None = None) -> RunResult:
        """Train and evaluate one cell (or return its cached result); never raises for a failed run.

        With several processes every one trains the cell; the main one decides what is
        cached, reads the checkpoint and writes the files.
        """
        rundir = self.run_dir(cell)
        main = self.processes.is_main
        cached = broadcast(rundir.cached() if main else None, self.processes)
        if cached is not None:
            return cached
        if main:
            rundir.prepare()
        device = process_device(self.processes, resolve_device(device_name or cell.train.device))
        config = cell.config()
        run = RunInfo(cell.name, cell.recipe, cell.method, cell.key(), rundir.path, config, device)
        started = time.perf_counter()
        fields: dict = {}
        crash: Exception | None = None
        status: Literal["ok", "failed"]
        try:
            require_device(device_name or cell.train.device)  # here, where the cell runs (a Ray node, not the driver)
            resume = broadcast(self._resume_state(rundir) if main else None, self.processes)
            fields = train_and_evaluate(self.services, cell, run, resume)
            status, reason = "ok", None
        except CmpError as exc:
            status, reason = "failed", str(exc)
        except Exception as exc:  # a crash inside a component: recorded, the sweep goes on
            crash = exc
            if main:
                where = f"traceback in {rundir.write_error(traceback.format_exc())}"
            else:
                where = f"on rank {self.processes.rank}"
                print(f"cmp: rank {self.processes.rank}: {traceback.format_exc()}", file=sys.stderr)
            status, reason = "failed", f"{type(exc).__name__}: {exc} ({where})"
        result = RunResult(
            recipe=cell.recipe, method=cell.method, cell=cell.name, key=cell.key(), sweep=config["sweep"],
            config=config, device=str(device), status=status, reason=reason,
            wall_time_s=time.perf_counter() - started, environment=environment(device, self.processes.world_size),
            **fields,
        )
        if main:
            rundir.write_result(result)
        if crash is not None and self.processes.distributed:
            raise crash  # one process alone crashed: the others would wait for it; the launcher stops them
        try:
            self.hooks.cmp_run_end(run=run, result=result)
        except Exception as exc:  # a lifecycle plugin must not lose a computed result
            self.echo(f"cmp: warning: a plugin failed at run end: {type(exc).__name__}: {exc}")
        return result

    def _resume_state(self, rundir: RunDirectory) -> dict | None:
        """The checkpoint to resume from; an unreadable one is set aside with a warning."""
        try:
            return rundir.read_checkpoint()
        except CheckpointError as exc:
            moved = rundir.set_aside()
            self.echo(f"cmp: warning: {exc.message}; set it aside as {moved} and training from scratch")
            return None


class SilentHooks:
    """The hook relay of a process that is not the main one: every lifecycle call does
    nothing, so there is one TensorBoard run and one progress display per run."""

    def __getattr__(self, name: str) -> Callable[..., list]:
        return lambda **kwargs: []


def _quiet(message: str) -> None:
    """Messages of processes other than the main one are not shown."""
