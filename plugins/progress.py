"""Progress bars on stderr for every long task of a run (`cmp_progress` hook), drawn by tqdm.

Tasks are `train` (steps), `features/train` and `features/test` (images whose features
were extracted) and `eval/<evaluator>` (an evaluator's iterations, such as the linear
probe's L-BFGS). On a terminal each task is a tqdm bar redrawn in place, an evaluation
during training nested below the training bar; its rate and ETA come from the updates
it has seen, so a bar that first hears of a task at 43% shows `?` until it can tell,
never a rate of 0. Anywhere else (a log file, CI) a plain line in tqdm's format is
written at each quarter of a task, and at least once a minute, so a log stays readable:
no carriage returns, no bar characters. `CMP_PROGRESS=0` silences it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from cmp import hookimpl

LOG_EVERY_S = 60.0
"""Away from a terminal, the longest silence between two lines of one task."""
_LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
_UNITS = {"train": "step", "features": "img", "eval": "it"}


@dataclass
class _Task:
    """One task being shown: its bar on a terminal, or when its last log line was written."""

    label: str
    unit: str
    total: int
    first: int
    started: float
    done: int = 0
    bar: tqdm | None = None
    last_quarter: int = -1
    last_line: float = 0.0


_tasks: dict[tuple[str, str, str], _Task] = {}


def _enabled() -> bool:
    return os.environ.get("CMP_PROGRESS", "1") not in ("0", "false", "no")


def log_line(task: _Task, done: int, now: float) -> str:
    """The line written for `task` away from a terminal: `label:  43% 430/1000 [00:02<00:03, 172.00step/s]`."""
    return tqdm.format_meter(
        done, task.total, now - task.started, prefix=task.label, unit=task.unit,
        initial=task.first, bar_format=_LOG_FORMAT,
    )


@hookimpl
def cmp_progress(run: Any, task: str, done: int, total: int) -> None:
    if not _enabled():
        return
    key = (str(run.dir), run.name, task)
    state = _tasks.get(key)
    if state is None or done < state.done:  # a new task (or the same one started over)
        for other in [k for k in _tasks if k == key or k[:2] != key[:2]]:
            _close(other)  # another run's bar left open (it failed) ends; this run's own nest
        state = _tasks[key] = _start(f"{run.name} {task}", task, done, total)
    state.done = done
    if state.bar is not None:
        state.bar.update(max(0, min(done, state.total) - state.bar.n))
    else:
        _log(state, done)
    if done >= total:
        _close(key)


@hookimpl
def cmp_run_end(run: Any, result: Any) -> None:
    """A run that failed mid-task leaves its bar open; close it so the next one starts clean."""
    for key in [k for k in _tasks if k[0] == str(run.dir) and k[1] == run.name]:
        _close(key)


def _start(label: str, task: str, done: int, total: int) -> _Task:
    unit = _UNITS.get(task.split("/")[0], "it")
    state = _Task(label, unit, max(total, 1), done, time.perf_counter(), done)
    if sys.stderr.isatty():
        state.bar = tqdm(
            total=state.total, initial=done, desc=label, unit=unit, file=sys.stderr,
            dynamic_ncols=True, mininterval=0.2, leave=True,
        )
    return state


def _log(state: _Task, done: int) -> None:
    now = time.perf_counter()
    quarter = 4 * done // state.total
    if quarter > state.last_quarter or now - state.last_line >= LOG_EVERY_S:
        state.last_quarter = max(quarter, state.last_quarter)
        state.last_line = now
        sys.stderr.write(log_line(state, done, now) + "\n")
        sys.stderr.flush()


def _close(key: tuple[str, str, str]) -> None:
    state = _tasks.pop(key, None)
    if state is not None and state.bar is not None:
        state.bar.close()
