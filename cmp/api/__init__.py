"""cmp's plugin API: everything a plugin author imports, from one place.

    from cmp.api import hookimpl, Register, MethodPreset, Negatives, PairBatch, Positive

The modules behind it: `cmp.api.slots` (the slot table), `cmp.api.hookspecs` (the
hooks), `cmp.api.contracts` (what each slot's components must do), `cmp.api.contexts`
(what baselines and executors are called with), `cmp.api.params` (parameter types),
`cmp.api.results` (what hooks are told of runs and results), `cmp.api.document` (what a
report section holds), `cmp.api.registry` and `cmp.api.loader` (loading plugins, also
for a plugin's tests), and the errors a plugin raises (from `cmp.errors`). Reusable
building blocks (EMA, ring buffer, gather) are in `cmp.nn`, the streaming readers in
`cmp.streaming`; a plugin imports nothing else of cmp (docs/design.md, "Layers").
"""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.capabilities import Capabilities
from cmp.api.contexts import (
    Baseline,
    BaselineContext,
    CellSpec,
    CellTask,
    EvaluationSplits,
    ExecutionContext,
    Executor,
    PartChoice,
    TrainSettings,
)
from cmp.api.contracts import (
    Augmentation,
    ChoiceSpec,
    DataInfo,
    EncodedImages,
    Encoder,
    Evaluator,
    Features,
    Head,
    ImageData,
    Loss,
    MethodPreset,
    Negatives,
    NegativeSource,
    Objective,
    PairBatch,
    PartValue,
    StatefulObjective,
    StepOutput,
    StepValue,
    StreamedData,
    TargetBranch,
)
from cmp.api.document import Figure, Section, Table
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
from cmp.errors import CheckpointError, CmpError, CmpWarning, DataError, PluginError, RecipeError, RunFailed

__all__ = [
    "PARTS", "SLOTS", "STEP_OPTIONS", "Augmentation", "Baseline", "BaselineContext", "BaselineResult", "Capabilities",
    "CellSpec", "CellTask", "CheckpointError", "ChoiceSpec", "CmpError", "CmpWarning", "Component", "DataError", "DataInfo", "EncodedImages",
    "Encoder", "EvaluationSplits", "Evaluator", "ExecutionContext", "Executor", "Features", "Figure", "Fraction",
    "FractionRange", "Head", "ImageData", "Loss", "MethodPreset", "MetricInfo", "NegativeSource", "Negatives",
    "NonNegative", "NonNegativeInt", "Objective", "PairBatch", "ParamError", "PartChoice", "PartValue", "PluginError", "Plugins",
    "Positive", "PositiveInt", "PositiveRange", "Probability", "Provider", "RecipeError", "Register", "Registry",
    "RunFailed", "RunInfo", "RunResult", "Section", "StatefulObjective", "StepOutput", "StepValue", "StreamedData", "Table", "TargetBranch",
    "TrainSettings", "hookimpl", "load_plugins",
]
