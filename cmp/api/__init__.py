"""cmp's plugin API: everything a plugin author imports, from one place.

    from cmp.api import hookimpl, Register, MethodPreset, Negatives, PairBatch, Positive

The modules behind it: `cmp.api.slots` (the slot table), `cmp.api.hookspecs` (the
hooks), `cmp.api.contracts` (what each slot's components must do), `cmp.api.params`
(parameter types), `cmp.api.results` (what hooks are told of runs and results),
`cmp.api.registry` and `cmp.api.loader` (loading plugins, also for a plugin's tests).
Reusable building blocks (EMA, ring buffer, gather) are in `cmp.nn`.
"""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.contracts import (
    Augmentation,
    Baseline,
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
    StreamedData,
    TargetBranch,
)
from cmp.api.hookspecs import Register
from cmp.api.loader import Plugins, load_plugins
from cmp.api.params import (
    Fraction,
    FractionRange,
    NonNegative,
    NonNegativeInt,
    ParamError,
    Positive,
    PositiveInt,
    PositiveRange,
    Probability,
)
from cmp.api.registry import Component, Provider, Registry
from cmp.api.results import BaselineResult, MetricInfo, RunInfo, RunResult
from cmp.api.slots import PARTS, SLOTS, STEP_OPTIONS

__all__ = [
    "PARTS", "SLOTS", "STEP_OPTIONS", "Augmentation", "Baseline", "BaselineResult", "Component", "DataInfo",
    "Encoder", "Evaluator", "Features", "Fraction", "FractionRange", "Head", "ImageData", "Loss", "MethodPreset",
    "MetricInfo", "NegativeSource", "Negatives", "NonNegative", "NonNegativeInt", "PairBatch", "Plugins", "Positive",
    "ParamError", "PositiveInt", "PositiveRange", "Probability", "Provider", "Register", "Registry", "RunInfo", "RunResult",
    "StreamedData", "TargetBranch", "hookimpl", "load_plugins",
]
