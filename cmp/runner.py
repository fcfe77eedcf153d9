"""Deprecated alias of `cmp.api.results`: the name `cmp.runner` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports `RunInfo`, what lifecycle hooks are told of a run (the runner itself is internal:
`cmp.engine.runner`), and importing it warns once with a `DeprecationWarning` naming the new
import. It goes in 1.0 (CHANGELOG.md; docs/plugins.md, "What is public").
"""

from __future__ import annotations

import warnings

from cmp.api.results import RunInfo

__all__ = ["RunInfo"]

warnings.warn(
    "`cmp.runner` is deprecated since cmp 0.1.0 and goes in 1.0: import `RunInfo`"
    " from `cmp.api`",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
