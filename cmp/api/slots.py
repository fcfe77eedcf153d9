"""The slot table: every kind of component cmp knows, described once.

A *slot* is a kind of component (encoders, losses, baselines...). Its entry says what the
registry holds for it, which recipe key chooses it, whether a method may leave it out,
and what the engine tells its factory when building it. The registry, the recipe schema,
cell resolution, construction (`cmp.engine.build`), `cmp plugins` and the hookspecs
read this table; `tests/cmp/api/test_slots.py` checks that they agree.

A *part* is one recipe key of a method that names a component of a slot: `encoder`
names an encoder, `predictor` names a projection head (predictors reuse that slot).

Adding a slot: one `Slot` entry below (plus a `Part` if methods choose it) and one
`cmp_register_<name>` hookspec in `cmp.api.hookspecs`; see docs/design.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["factory", "function", "preset"]
"""factory: called with the engine's context and the recipe's parameters, returns the
component; function: used as is with the parameters bound (losses); preset: data, not
called (method presets)."""


@dataclass(frozen=True)
class Slot:
    """One kind of component.

    name:       registry key and hook suffix (`cmp_register_<name>`)
    noun:       what one component is called in messages
    doc:        one line for `cmp plugins` and the docs
    kind:       factory, function or preset (see `Kind`)
    recipe_key: where a recipe chooses one (for docs and messages)
    told:       the positional arguments its factory receives, by name
    capabilities: the keywords `register` accepts beside the factory
                (`cmp.api.capabilities.Capabilities`)
    """

    name: str
    noun: str
    doc: str
    kind: Kind
    recipe_key: str
    told: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("check_params", "check_cell")


@dataclass(frozen=True)
class Part:
    """A method's recipe key that chooses a component of `slot`.

    Parts are built in table order. `told` maps each argument the slot's factory is told
    (`Slot.told`, in that order) to the `cmp.engine.build.BuildContext` attribute that
    gives it for this part: a projection head's `in_dim` is the encoder's `feature_dim`,
    a predictor's the head's `head_dim`.
    """

    key: str
    slot: str
    optional: bool = False
    told: Mapping[str, str] = field(default_factory=dict)


SLOTS: dict[str, Slot] = {
    s.name: s
    for s in (
        Slot("augmentations", "augmentation", "uint8 images -> augmented float views", "factory",
             "methods.NAME.augmentation", ("data",)),
        Slot("encoders", "encoder", "images -> representation h (what is evaluated)", "factory",
             "methods.NAME.encoder", ("data",)),
        Slot("projection_heads", "projection head", "h -> z; predictors reuse this slot", "factory",
             "methods.NAME.projection_head / predictor", ("in_dim",)),
        Slot("targets", "target branch", "where positives come from: shared or momentum", "factory",
             "methods.NAME.target", ("online", "dim")),
        Slot("negative_sources", "negative source", "negatives for each anchor", "factory",
             "methods.NAME.negative_source", ("dim",), ("check_params", "check_cell", "provides_negatives")),
        Slot("losses", "loss", "(anchors, positives, negatives) -> scalar", "function",
             "methods.NAME.loss", (), ("check_params", "check_cell", "needs_negatives", "one_pair", "min_batch")),
        Slot("objectives", "objective", "a loss with parameters or state of its own (SwAV, DINO), in place of `loss`",
             "factory", "methods.NAME.objective", ("dim",)),
        Slot("optimizers", "optimizer", "parameter groups -> torch optimizer", "factory",
             "methods.NAME.optimizer", ("param_groups", "batch_size")),
        Slot("schedules", "schedule", "learning-rate schedule over steps", "factory",
             "methods.NAME.schedule", ("optimizer", "total_steps", "steps_per_epoch")),
        Slot("methods", "method preset", "named slot choices (simclr, moco, ...)", "preset",
             "methods.NAME.preset", capabilities=()),
        Slot("datasets", "dataset", "labelled uint8 train/test images", "factory",
             "data.dataset", ("root", "download", "split_seed"), ("check_params", "root_hint")),
        Slot("evaluators", "evaluator", "frozen features -> metrics", "factory", "eval.NAME",
             capabilities=("check_params", "during_training", "metrics")),
        Slot("baselines", "baseline", "a reference representation under the same protocol", "factory",
             "baselines"),
        Slot("executors", "executor", "how cells run: this process, worker processes, a Ray cluster", "factory",
             "executor (cmp run --executor)"),
    )
}

PARTS: dict[str, Part] = {
    p.key: p
    for p in (
        Part("augmentation", "augmentations", told={"data": "data"}),
        Part("encoder", "encoders", told={"data": "data"}),
        Part("projection_head", "projection_heads", told={"in_dim": "feature_dim"}),
        Part("predictor", "projection_heads", optional=True, told={"in_dim": "head_dim"}),
        Part("target", "targets", told={"online": "online", "dim": "embedding_dim"}),
        Part("negative_source", "negative_sources", told={"dim": "embedding_dim"}),
        Part("loss", "losses", optional=True),
        Part("objective", "objectives", optional=True, told={"dim": "embedding_dim"}),
        Part("optimizer", "optimizers", told={"param_groups": "param_groups", "batch_size": "batch_size"}),
        Part("schedule", "schedules", optional=True,
             told={"optimizer": "optimizer", "total_steps": "total_steps", "steps_per_epoch": "steps_per_epoch"}),
    )
}
"""A method's parts, in the order they are built."""


@dataclass(frozen=True)
class StepOption:
    """A setting of the training step that is not a component (how views meet)."""

    key: str
    default: object
    doc: str


STEP_OPTIONS: dict[str, StepOption] = {
    o.key: o
    for o in (
        StepOption("pairs", "symmetric",
                   "which views are anchors and which their positives: symmetric, one_way, "
                   "multicrop, or a list of [anchor view, positive view] pairs"),
        StepOption("joint_forward", False,
                   "views of one size go through the online network as one batch (BatchNorm over all)"),
    )
}


def hook_name(slot: str) -> str:
    """The registration hook of a slot."""
    return f"cmp_register_{slot}"
