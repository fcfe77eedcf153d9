"""The module names cmp had before 0.1.0, kept as deprecated aliases for the 0.x series.

Each alias (`cmp/contracts.py`, `params.py`, `hookspecs.py`, `plugin_loader.py`,
`runner.py`, `cells.py`, `recipe.py`) re-exports the public objects it held from their new
module and calls `warn_moved` once, when first imported, so code written before 0.1.0 keeps
working and is told the new import. They go in 1.0 (CHANGELOG.md; docs/plugins.md, "What is
public, and how it may change").
"""

from __future__ import annotations

import warnings


def warn_moved(old: str, instead: str) -> None:
    """One `DeprecationWarning` at the line that imports the alias module `old`."""
    warnings.warn(
        f"`{old}` is deprecated since cmp 0.1.0 and goes in 1.0: {instead}",
        DeprecationWarning,
        stacklevel=3,  # past this function and the alias module; warnings skips importlib's frames
    )
