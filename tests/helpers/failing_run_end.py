"""A lifecycle plugin for tests (`cmp -p tests.helpers.failing_run_end`) that fails at run end."""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.results import RunInfo, RunResult


@hookimpl
def cmp_run_end(run: RunInfo, result: RunResult) -> None:
    raise OSError("the experiment tracker is unreachable")
