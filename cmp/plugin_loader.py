"""Deprecated: `cmp.plugin_loader` before cmp 0.1.0, now `cmp.api.loader` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.api.loader import ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, GROUP, OWN_DISTRIBUTION, Plugins, load_plugins

__all__ = ["ENV_DISABLE_AUTOLOAD", "ENV_PLUGINS", "GROUP", "OWN_DISTRIBUTION", "Plugins", "load_plugins"]

warn_moved(
    "cmp.plugin_loader",
    "import `load_plugins` and `Plugins` from `cmp.api` (the module is now `cmp.api.loader`)",
)
