"""Deprecated: `cmp.runner` before cmp 0.1.0, now `cmp.api.results` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.api.results import RunInfo

__all__ = ["RunInfo"]

warn_moved("cmp.runner", "import `RunInfo` from `cmp.api`")
