"""cmp: compare contrastive self-supervised methods.

A method is a choice of parts for one shared training step (augmentation, encoder,
projection head, target branch, negative source, loss, optimizer); the parts are
plugins registered through the hooks in `cmp.api.hookspecs`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("cmp")
"""Marker for hook implementations in a plugin module: `@hookimpl def cmp_register_losses(register): ...`."""

__all__ = ["__version__", "hookimpl"]
