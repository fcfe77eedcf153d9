"""Deprecated alias of `cmp.api.hookspecs`: the name `cmp.hookspecs` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports the hook specifications, and importing it warns once with a `DeprecationWarning`
naming the new import. It goes in 1.0 (CHANGELOG.md; docs/plugins.md, "What is public").
"""

from __future__ import annotations

import warnings

from cmp.api.hookspecs import LifecycleSpecs, Register, RegistrationSpecs, hookspec

__all__ = ["LifecycleSpecs", "Register", "RegistrationSpecs", "hookspec"]

warnings.warn(
    "`cmp.hookspecs` is deprecated since cmp 0.1.0 and goes in 1.0: import"
    " `hookimpl` and `Register` from `cmp.api` (the module is now `cmp.api.hookspecs`)",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
