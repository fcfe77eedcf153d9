"""cmp-mmcr: MMCR as a third-party cmp plugin (a loss and a method preset)."""

from __future__ import annotations

__version__ = "0.1.0"
