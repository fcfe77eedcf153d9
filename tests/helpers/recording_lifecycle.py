"""A lifecycle plugin that records what the runner tells it: the RunInfo at start and end, and the result."""

from __future__ import annotations

from typing import Any

from cmp import hookimpl
from cmp.api.results import RunInfo, RunResult

SEEN: list[tuple[str, Any, Any]] = []


@hookimpl
def cmp_run_start(run: RunInfo) -> None:
    SEEN.append(("start", run, None))


@hookimpl
def cmp_run_end(run: RunInfo, result: RunResult) -> None:
    SEEN.append(("end", run, result))
