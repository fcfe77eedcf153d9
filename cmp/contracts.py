"""Deprecated alias of `cmp.api.contracts`: the name `cmp.contracts` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports the contracts of the slots' components, and importing it warns once with a
`DeprecationWarning` naming the new import. It goes in 1.0 (CHANGELOG.md; docs/plugins.md,
"What is public").
"""

from __future__ import annotations

import warnings

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
    NegativeSource,
    Negatives,
    PairBatch,
    TargetBranch,
)

__all__ = [
    "Augmentation", "DataInfo", "Encoder", "Evaluator", "Features", "Head", "ImageData", "Loss",
    "MethodPreset", "NegativeSource", "Negatives", "PairBatch", "TargetBranch",
]

warnings.warn(
    "`cmp.contracts` is deprecated since cmp 0.1.0 and goes in 1.0: import from"
    " `cmp.api` (the module is now `cmp.api.contracts`)",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
