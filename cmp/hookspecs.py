"""Deprecated: `cmp.hookspecs` before cmp 0.1.0, now `cmp.api.hookspecs` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.api.hookspecs import LifecycleSpecs, Register, RegistrationSpecs, hookspec

__all__ = ["LifecycleSpecs", "Register", "RegistrationSpecs", "hookspec"]

warn_moved(
    "cmp.hookspecs",
    "import `hookimpl` and `Register` from `cmp.api` (the module is now `cmp.api.hookspecs`)",
)
