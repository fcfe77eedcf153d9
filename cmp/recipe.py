"""Deprecated: `cmp.recipe` before cmp 0.1.0, now `cmp.config.recipe` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.config.recipe import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe"]

warn_moved("cmp.recipe", "import `load_recipe` and `Recipe` from `cmp.config.recipe`")
