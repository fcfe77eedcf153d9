"""Deprecated alias of `cmp.config.cells`: the name `cmp.cells` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports `resolve` and `Cell`, which a plugin's tests use to resolve its recipe, and
importing it warns once with a `DeprecationWarning` naming the new import. It goes in 1.0
(CHANGELOG.md; docs/plugins.md, "What is public").
"""

from __future__ import annotations

import warnings

from cmp.config.cells import Cell, resolve

__all__ = ["Cell", "resolve"]

warnings.warn(
    "`cmp.cells` is deprecated since cmp 0.1.0 and goes in 1.0: import `resolve` and"
    " `Cell` from `cmp.config.cells`",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
