"""Resolve a recipe into cells: one fully specified run per method (and sweep point).

For each method the slot choices are layered, lowest first: the method's preset, the
recipe's `defaults`, the method's own keys. A later layer that names the same component
merges its parameters into the earlier one's; naming another component replaces them.
Every name is looked up in the registry and every parameter validated before anything
is built, so a typo costs nothing. What a cell is lives in `cmp.config.cell`, how a sweep
expands in `cmp.config.sweep`, how cells differ (the dry run's display) in
`cmp.config.differences`; their public names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from cmp.api.contracts import MethodPreset
from cmp.api.params import ParamError, ParamSchema, describe_validation_error
from cmp.api.registry import Registry
from cmp.api.slots import PARTS, SLOTS, STEP_OPTIONS
from cmp.config.cell import CONFIG_FORMAT, Cell, ResolvedChoice, StepOptions, plain
from cmp.config.differences import method_differences, resolved_values
from cmp.config.recipe import (
    Choice,
    DataSection,
    MethodSpec,
    Parts,
    Recipe,
    TrainSection,
    apply_override,
    known_keys,
)
from cmp.config.sweep import ROOT_KEYS, check_sweep_keys, method_values, root_values, sweep_points, with_root_values
from cmp.devices import missing_device
from cmp.errors import PluginError, RecipeError
from cmp.precision import resolve_precision
from cmp.weights import remember_pattern, with_seed

__all__ = [
    "CONFIG_FORMAT", "LOCAL_EXECUTOR", "ROOT_KEYS", "Cell", "ResolvedChoice", "StepOptions",
    "method_differences", "resolve", "resolve_executor", "resolved_values", "sweep_points",
]

LOCAL_EXECUTOR = "local"
"""The default executor, the one that runs cells on the machine resolving the recipe."""

def resolve(recipe: Recipe, registry: Registry) -> list[Cell]:
    """Every cell: each method at each sweep point; identical cells are kept once.

    `RecipeError` or `PluginError` for anything that does not fit, before any work.
    """
    cells: dict[tuple[str, str], Cell] = {}
    for where, point in sweep_points(recipe):
        check_sweep_keys(recipe, point, where)
        root = root_values(point)
        at_point = with_root_values(recipe, root, where)
        for method in at_point.model.methods:
            own, applies = method_values(point, root, method)
            for cell in _resolve_cells(at_point, registry, method, own, where):
                cell = dataclasses.replace(cell, sweep=applies)
                cells.setdefault((method, cell.key()), cell)
    return list(cells.values())


def resolve_executor(recipe: Recipe, registry: Registry) -> ResolvedChoice:
    """The recipe's executor, looked up and its parameters validated."""
    choice = recipe.model.executor
    if choice.name is None:  # parameters only (`--jobs 2`): of the default executor
        choice = Choice(name=LOCAL_EXECUTOR, params=choice.params)
    return _resolve_choice(recipe, registry, "executors", choice, "executor.name",
                           {p: f"executor.params.{p}" for p in choice.params}, "executor.params")


def _resolve_cells(
    recipe: Recipe, registry: Registry, method: str, swept: dict[str, Any], where: str
) -> list[Cell]:
    model = recipe.model
    data = _resolve_data(recipe, registry)
    _check_device(recipe, model.train.device)
    evaluate_only = model.train.evaluate_only or model.methods[method].evaluate_only
    train = _evaluation_train(model.train) if evaluate_only else _resolved_train(model.train)
    evaluators = {
        name: _resolve_choice(
            recipe, registry, "evaluators", Choice(name=name, params=params or {}),
            name_path=f"eval.{name}", param_paths={}, default_prefix=f"eval.{name}",
        )
        for name, params in model.eval.items()
    }
    baselines = tuple(
        _resolve_choice(
            recipe, registry, "baselines", Choice(name=name, params={}),
            name_path=f"baselines.{i}", param_paths={}, default_prefix=f"baselines.{i}",
        )
        for i, name in enumerate(model.baselines)
        if model.baseline_method in (None, method)
    )
    parts, step = _resolve_method(recipe, registry, method, _sweep_layer(recipe, swept, where), where, evaluate_only)
    cell = Cell(recipe.name, method, data, train, parts, step, evaluators, baselines)
    _check_parts_in_cell(recipe, registry, cell)
    return [cell]


def _check_parts_in_cell(recipe: Recipe, registry: Registry, cell: Cell) -> None:
    """Each part's `check_cell(params, cell)`, registered beside its component: what the part
    requires of the rest of the cell (NNCLR's support set at least one `train.batch_size`),
    refused as one error at the parameter its `ParamError` names."""
    for choice in cell.parts.values():
        if choice is None:
            continue
        check = registry.get(choice.slot, choice.name).capabilities.check_cell
        if check is None:
            continue
        try:
            check(choice.params, cell)
        except ParamError as exc:
            prefix = f"{choice.where.rsplit('.', 1)[0]}.params"
            head = choice.param_sources.get(exc.loc[0]) if exc.loc else None
            path = ".".join((head or f"{prefix}.{exc.loc[0]}", *exc.loc[1:])) if exc.loc else prefix
            raise _error(recipe, path, exc.message) from None


def _sweep_layer(recipe: Recipe, swept: dict[str, Any], where: str) -> dict[str, Any]:
    """Dotted part keys (`loss.params.temperature`) as one validated layer of parts."""
    nested: dict[str, Any] = {}
    for key, value in swept.items():
        apply_override(nested, key, value, recipe.source.where(f"{where}.{key}"))
    try:
        return _set_fields(Parts.model_validate(nested))
    except pydantic.ValidationError as exc:
        loc, message = describe_validation_error(exc, known_keys(exc, Parts))
        raise recipe.source.error(f"{where}.{'.'.join(loc)}", message) from None


def _resolve_data(recipe: Recipe, registry: Registry) -> DataSection:
    data = recipe.model.data
    component = registry.get("datasets", data.dataset, where=recipe.source.where("data.dataset"))
    if data.root is not None and not Path(data.root).expanduser().is_dir():
        advice = component.capabilities.root_hint  # the plugin's: root -> what the folder should hold
        hint = advice(data.root) if advice is not None else ""
        raise recipe.source.error("data.root", f"directory '{data.root}' does not exist{hint}")
    params = _validate(recipe, component.schema, data.params, {}, "data.params", component.capabilities.check_params)
    return data.model_copy(update={"params": params})


def _resolved_train(train: TrainSection) -> TrainSection:
    """The train section with `precision: auto` resolved for this machine's device, so the
    cell's key, result and report hold what runs (a bf16 result is never reused as fp32's)."""
    return train.model_copy(update={"precision": resolve_precision(train.precision, train.device)})


EVALUATION_TRAIN_KEYS = ("seed", "device", "precision", "channels_last", "threads", "backend")
"""What an evaluate-only cell keeps of the train section: the encoder's seed (its random
initialisation) and how it runs; the rest (budget, batch, schedule) trains, so is not its."""

EVALUATION_PARTS = ("encoder", "augmentation")
"""The parts an evaluate-only cell builds: the encoder, and the augmentation whose
`preprocess` makes the evaluation input (its size, the data's normalisation)."""

DEFAULT_EVALUATION_AUGMENTATION = "simclr"
"""The augmentation an evaluate-only method gets when none is chosen: only its `preprocess`
runs (the data set's own size, normalised with its mean and std)."""


def _evaluation_train(train: TrainSection) -> TrainSection:
    """An evaluate-only cell's train section: `epochs: 0`, its own keys, every other at its
    default, so a recipe's batch size or schedule does not change its key."""
    kept = {key: getattr(_resolved_train(train), key) for key in EVALUATION_TRAIN_KEYS}
    return TrainSection(epochs=0, **kept)


def _check_device(recipe: Recipe, device: str) -> None:
    """Refuse a device this machine lacks when the cells run here (the local executor),
    before any work; under another executor (Ray) each cell checks where it runs
    (`cmp.devices.require_device`), since the machine resolving the recipe may have none."""
    if (recipe.model.executor.name or LOCAL_EXECUTOR) != LOCAL_EXECUTOR:
        return
    problem = missing_device(device)
    if problem is not None:
        raise recipe.source.error("train.device", problem)


@dataclass
class _Layered:
    """A choice being layered: its name, merged params, and where each came from."""

    choice: Choice
    name_path: str
    param_paths: dict[str, str]
    default_prefix: str


def _method_layers(
    recipe: Recipe, registry: Registry, method: str, sweep_layer: Mapping[str, Any], sweep_where: str
) -> list[tuple[Mapping[str, Any], str]]:
    """A method's layers of part and step keys, lowest first, each with the key path it came
    from: its preset's parts, the recipe's `defaults`, the method's own keys, the sweep point's."""
    spec = recipe.model.methods[method]
    layers: list[tuple[Mapping[str, Any], str]] = []
    if spec.preset is not None:
        component = registry.get("methods", spec.preset, where=recipe.source.where(f"methods.{method}.preset"))
        preset: MethodPreset = component.factory
        layers.append((_preset_parts(preset, spec.preset, component.provider), f"preset '{spec.preset}'"))
    layers.append((_set_fields(recipe.model.defaults), "defaults"))
    layers.append((_set_fields(spec), f"methods.{method}"))
    layers.append((sweep_layer, sweep_where))
    return layers


def _resolved_parts(
    recipe: Recipe, registry: Registry, method: str, layered: Mapping[str, _Layered | None], evaluate_only: bool
) -> dict[str, ResolvedChoice | None]:
    """Each part's layered choice looked up and validated, in slot-table order; a part no
    layer chose is None if it may be left out, else one error naming where to choose it.
    An evaluate-only cell has only `EVALUATION_PARTS` (the augmentation by default simclr's)."""
    parts: dict[str, ResolvedChoice | None] = {}
    for key, part in PARTS.items():
        entry = layered.get(key)
        if evaluate_only and key not in EVALUATION_PARTS:
            parts[key] = None
            continue
        if entry is None and evaluate_only and key == "augmentation":
            entry = _Layered(Choice(name=DEFAULT_EVALUATION_AUGMENTATION), f"methods.{method}.augmentation", {},
                             f"methods.{method}.augmentation.params")
        if entry is None:
            if part.optional:
                parts[key] = None
                continue
            raise recipe.source.error(
                f"methods.{method}",
                f"no {SLOTS[part.slot].noun} chosen: set methods.{method}.{key} or defaults.{key}, or use a preset",
            )
        parts[key] = _resolve_choice(
            recipe, registry, part.slot, entry.choice, entry.name_path, entry.param_paths, entry.default_prefix
        )
    return parts


def _resolve_method(
    recipe: Recipe, registry: Registry, method: str, sweep_layer: Mapping[str, Any], sweep_where: str,
    evaluate_only: bool = False,
) -> tuple[dict[str, ResolvedChoice | None], StepOptions]:
    """A method's parts and step options: its layers merged key by key (a later layer naming
    the same component merges parameters, another component replaces them), then resolved.
    An evaluate-only method has its encoder and augmentation and the default step options."""
    layers = _method_layers(recipe, registry, method, sweep_layer, sweep_where)

    layered: dict[str, _Layered | None] = {}
    step: dict[str, Any] = {key: option.default for key, option in STEP_OPTIONS.items()}
    step_where: dict[str, str] = {key: f"methods.{method}" for key in STEP_OPTIONS}
    for values, prefix in layers:
        for key, value in values.items():
            if key in STEP_OPTIONS:
                step[key] = value
                step_where[key] = f"{prefix}.{key}"
                continue
            if key not in PARTS:
                continue
            if value is None or (isinstance(value, Choice) and value.name == "none" and PARTS[key].optional):
                layered[key] = None
                continue
            previous = layered.get(key)
            named = value.name is not None
            if value.name is None:
                if previous is None:
                    raise _error(recipe, f"{prefix}.{key}", f"sets parameters, but no {SLOTS[PARTS[key].slot].noun} is chosen; add name:")
                value = Choice(name=previous.choice.name, params=value.params)
            if previous is not None and previous.choice.name == value.name:
                previous.choice = Choice(name=value.name, params={**previous.choice.params, **value.params})
                if named:  # this layer named the component again: its name now comes from here
                    previous.name_path = f"{prefix}.{key}.name"
                previous.param_paths.update({p: f"{prefix}.{key}.params.{p}" for p in value.params})
            else:
                layered[key] = _Layered(
                    value, f"{prefix}.{key}.name",
                    {p: f"{prefix}.{key}.params.{p}" for p in value.params},
                    f"{prefix}.{key}.params",
                )

    parts = _resolved_parts(recipe, registry, method, layered, evaluate_only)
    if evaluate_only:
        return parts, StepOptions()
    if _check_loss_or_objective(recipe, method, parts):
        _check_compatible(recipe, registry, parts)
        _check_loss_needs(recipe, registry, parts, step["pairs"], step_where["pairs"])
    pairs = step["pairs"]
    return parts, StepOptions(
        pairs=pairs if isinstance(pairs, str) else tuple(tuple(p) for p in pairs),
        joint_forward=bool(step["joint_forward"]),
    )


def _resolve_choice(
    recipe: Recipe, registry: Registry, slot: str, choice: Choice,
    name_path: str, param_paths: dict[str, str], default_prefix: str,
) -> ResolvedChoice:
    assert choice.name is not None, f"{name_path}: a part is resolved only once it names a component"
    component = registry.get(slot, choice.name, where=_where(recipe, name_path))
    seed = recipe.model.train.seed
    given = {k: with_seed(v, seed) if k == "weights" else v for k, v in choice.params.items()}
    params = _validate(recipe, component.schema, given, param_paths, default_prefix,
                       component.capabilities.check_params)
    if "weights" in params:
        params["weights"] = remember_pattern(params["weights"], choice.params.get("weights"))
    return ResolvedChoice(slot, choice.name, params, name_path, dict(param_paths))


def _validate(
    recipe: Recipe, schema: ParamSchema | None, params: Mapping[str, Any],
    param_paths: dict[str, str], default_prefix: str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Parameters validated by the factory's schema, then together by the component's
    `check_params` (registered with it), so what fails is one error at load naming its key."""
    assert schema is not None
    try:
        values = schema.validate(params)
        if check is not None:
            check(values)
        return values
    except ParamError as exc:
        head = param_paths.get(exc.loc[0]) if exc.loc else None
        path = ".".join((head or f"{default_prefix}.{exc.loc[0]}", *exc.loc[1:])) if exc.loc else default_prefix
        raise _error(recipe, path, exc.message) from None


def _check_loss_or_objective(recipe: Recipe, method: str, parts: dict[str, ResolvedChoice | None]) -> bool:
    """A step has one loss: a loss function, or an objective (SwAV, DINO), never both;
    True for a loss function."""
    loss, objective = parts["loss"], parts["objective"]
    if loss is not None and objective is not None:
        raise _error(recipe, loss.where, (
            f"loss '{loss.name}' is chosen beside objective '{objective.name}' (at {objective.where}), "
            f"which computes the step's loss itself: set loss: none, or objective: none"
        ))
    if loss is None and objective is None:
        raise recipe.source.error(
            f"methods.{method}", f"no loss chosen: set methods.{method}.loss or defaults.loss (or an objective), or use a preset"
        )
    return loss is not None


def _check_compatible(recipe: Recipe, registry: Registry, parts: dict[str, ResolvedChoice | None]) -> None:
    loss, negatives = parts["loss"], parts["negative_source"]
    assert loss is not None and negatives is not None
    needs = registry.get("losses", loss.name).capabilities.needs_negatives
    gives = registry.get("negative_sources", negatives.name).capabilities.provides_negatives
    if needs and not gives:
        raise _error(
            recipe, negatives.where,
            f"loss '{loss.name}' needs negatives, but negative source '{negatives.name}' gives none",
        )


def _pair_count(pairs: Any) -> int | None:
    """How many (anchor, positive) pairs a `pairs` value makes; None for `multicrop` (the augmentation's)."""
    if isinstance(pairs, str):
        return {"one_way": 1, "symmetric": 2}.get(pairs)
    return len(pairs)


def _check_loss_needs(
    recipe: Recipe, registry: Registry, parts: dict[str, ResolvedChoice | None], pairs: Any, pairs_where: str
) -> None:
    """What the loss declared it needs when registered: `one_pair=True` (its statistics
    compare one view's batch with another's, so `symmetric` pairs would stack both views
    into each side) and `min_batch=k` (a global batch of at least k, for batch statistics)."""
    loss = parts["loss"]
    assert loss is not None
    needs = registry.get("losses", loss.name).capabilities
    if needs.one_pair and _pair_count(pairs) != 1:
        shown = pairs if isinstance(pairs, str) else json.dumps(plain(pairs))
        raise _error(recipe, pairs_where, (
            f"loss '{loss.name}' compares one view's batch with another's, so it takes one pair of views "
            f"(pairs: one_way), not {shown}"
        ))
    least = needs.min_batch
    batch = recipe.model.train.batch_size
    if least is not None and batch < least:
        raise _error(recipe, "train.batch_size", (
            f"loss '{loss.name}' needs a global batch of at least {least} images (it estimates statistics over the "
            f"batch), got {batch}"
        ))


def _set_fields(model: pydantic.BaseModel) -> dict[str, Any]:
    """Only the keys the recipe wrote, so an unset key does not hide a preset's value."""
    return {name: getattr(model, name) for name in model.model_fields_set}


def _preset_parts(preset: MethodPreset, name: str, provider: Any) -> dict[str, Any]:
    """The preset's parts as a layer; the registry has already refused anything but a MethodPreset."""
    try:
        spec = MethodSpec.model_validate(dict(preset.parts))
    except pydantic.ValidationError as exc:
        loc, message = describe_validation_error(exc, known_keys(exc, MethodSpec))
        raise PluginError(f"method preset '{name}': {'.'.join(loc)}: {message}", where=f"plugin '{provider.plugin}'") from None
    return _set_fields(spec)


def _where(recipe: Recipe, path: str) -> str:
    if path.startswith("preset "):
        return path
    return recipe.source.where(path)


def _error(recipe: Recipe, path: str, message: str) -> RecipeError:
    return RecipeError(message, where=_where(recipe, path))
