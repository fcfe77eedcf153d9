"""Deprecated alias of `cmp.config.recipe`: the name `cmp.recipe` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports `load_recipe` and `Recipe`, which a plugin's tests use to read its recipe, and
importing it warns once with a `DeprecationWarning` naming the new import. It goes in 1.0
(CHANGELOG.md; docs/plugins.md, "What is public").
"""

from __future__ import annotations

import warnings

from cmp.config.recipe import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe"]

warnings.warn(
    "`cmp.recipe` is deprecated since cmp 0.1.0 and goes in 1.0: import"
    " `load_recipe` and `Recipe` from `cmp.config.recipe`",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
