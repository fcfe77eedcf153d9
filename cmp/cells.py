"""Deprecated: `cmp.cells` before cmp 0.1.0, now `cmp.config.cells` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.config.cells import Cell, resolve

__all__ = ["Cell", "resolve"]

warn_moved("cmp.cells", "import `resolve` and `Cell` from `cmp.config.cells`")
