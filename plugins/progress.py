"""Progress bars on stderr for training and feature extraction (`cmp_progress` hook).

On a terminal one line per task redraws in place; otherwise a line is printed every
quarter of the task. `CMP_PROGRESS=0` silences it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from cmp import hookimpl

_started: dict[tuple[str, str], float] = {}
_last_draw: dict[tuple[str, str], float] = {}
_last_quarter: dict[tuple[str, str], int] = {}


def _enabled() -> bool:
    return os.environ.get("CMP_PROGRESS", "1") not in ("0", "false", "no")


def format_bar(label: str, done: int, total: int, elapsed: float, width: int = 24) -> str:
    """`label [#####.....]  45%  120/300  3.2/s  eta 12s`."""
    fraction = done / total if total else 1.0
    filled = int(width * fraction)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    return (
        f"{label} [{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} "
        f"{done}/{total} {rate:.1f}/s eta {eta:.0f}s"
    )


@hookimpl
def cmp_progress(run: Any, task: str, done: int, total: int) -> None:
    if not _enabled():
        return
    key = (str(run.dir), task)
    now = time.perf_counter()
    if done == 0 or key not in _started:
        _started[key] = now
        _last_quarter[key] = -1
    line = format_bar(f"{run.name} {task}", done, total, now - _started[key])
    stream = sys.stderr
    if stream.isatty():
        if done >= total or now - _last_draw.get(key, 0.0) > 0.1:
            stream.write("\r" + line + ("\n" if done >= total else ""))
            stream.flush()
            _last_draw[key] = now
    else:
        quarter = 4 * done // max(total, 1)
        if quarter > _last_quarter[key]:
            _last_quarter[key] = quarter
            stream.write(line + "\n")
            stream.flush()
    if done >= total:
        _started.pop(key, None)
