"""Deprecated alias of `cmp.api.loader`: the name `cmp.plugin_loader` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports plugin loading, which a plugin's tests use, and importing it warns once with a
`DeprecationWarning` naming the new import. It goes in 1.0 (CHANGELOG.md; docs/plugins.md,
"What is public").
"""

from __future__ import annotations

import warnings

from cmp.api.loader import ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, GROUP, OWN_DISTRIBUTION, Plugins, load_plugins

__all__ = ["ENV_DISABLE_AUTOLOAD", "ENV_PLUGINS", "GROUP", "OWN_DISTRIBUTION", "Plugins", "load_plugins"]

warnings.warn(
    "`cmp.plugin_loader` is deprecated since cmp 0.1.0 and goes in 1.0: import"
    " `load_plugins` and `Plugins` from `cmp.api` (the module is now `cmp.api.loader`)",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
