"""Deprecated: `cmp.contracts` before cmp 0.1.0, now `cmp.api.contracts` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.api.contracts import (
    Augmentation,
    DataInfo,
    Encoder,
    Evaluator,
    Features,
    Head,
    ImageData,
    Loss,
    MethodPreset,
    Negatives,
    NegativeSource,
    PairBatch,
    TargetBranch,
)

__all__ = [
    "Augmentation", "DataInfo", "Encoder", "Evaluator", "Features", "Head", "ImageData", "Loss",
    "MethodPreset", "NegativeSource", "Negatives", "PairBatch", "TargetBranch",
]

warn_moved("cmp.contracts", "import from `cmp.api` (the module is now `cmp.api.contracts`)")
