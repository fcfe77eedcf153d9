"""Resolve a recipe into cells: one fully specified run per method (and sweep point).

For each method the slot choices are layered, lowest first: the method's preset, the
recipe's `defaults`, the method's own keys. A later layer that names the same component
merges its parameters into the earlier one's; naming another component replaces them.
Every name is looked up in the registry and every parameter validated before anything
is built, so a typo costs nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import torch

from cmp.api.contracts import MethodPreset
from cmp.api.params import ParamError, ParamSchema, describe_validation_error
from cmp.api.registry import Registry
from cmp.api.slots import PARTS, SLOTS, STEP_OPTIONS
from cmp.config.recipe import (
    Choice, DataSection, MethodSpec, Parts, Recipe, RecipeModel, TrainSection, apply_override, known_keys,
)
from cmp.errors import PluginError, RecipeError
from cmp.suggest import unknown_name

CONFIG_FORMAT = 2
"""Version of the resolved configuration's shape; part of every cell's key."""

_UNHASHED_TRAIN_KEYS = ("log_every", "threads", "backend")


@dataclass(frozen=True)
class ResolvedChoice:
    """A validated slot choice, the key path its name came from, and where each parameter
    the recipe layers set came from (`preset 'moco'.optimizer.params.lr_scaling` for one a
    preset set and a later layer naming the same component kept): `cmp run --dry-run`
    shows it."""

    slot: str
    name: str
    params: dict[str, Any]
    where: str
    param_sources: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": _plain(self.params)}


@dataclass(frozen=True)
class StepOptions:
    """How views meet in a step (see `cmp.api.slots.STEP_OPTIONS`)."""

    pairs: str | tuple[tuple[int, int], ...] = "symmetric"
    joint_forward: bool = False


@dataclass(frozen=True)
class Cell:
    """One run: a method with every choice resolved, ready to train and evaluate.

    `data` holds the data set's validated parameters; `parts` one resolved choice per key
    of `cmp.api.slots.PARTS` (None for an optional part left out).
    """

    recipe: str
    method: str
    data: DataSection
    train: TrainSection
    parts: dict[str, ResolvedChoice | None]
    step: StepOptions
    evaluators: dict[str, ResolvedChoice]
    baselines: tuple[ResolvedChoice, ...]
    sweep: dict[str, Any] = field(default_factory=dict)

    def part(self, key: str) -> ResolvedChoice:
        """A part that every method has (`encoder`, `loss`...)."""
        choice = self.parts[key]
        assert choice is not None, f"part '{key}' is optional"
        return choice

    @property
    def name(self) -> str:
        suffix = ",".join(f"{k}={_short(v)}" for k, v in self.sweep.items())
        return f"{self.method}[{suffix}]" if suffix else self.method

    def config(self) -> dict[str, Any]:
        """The resolved configuration as plain data (what `config.yaml` holds)."""
        return {
            "recipe": self.recipe,
            "method": self.method,
            "sweep": _plain(self.sweep),
            "data": _plain(self.data.model_dump()),
            "train": _plain(self.train.model_dump()),
            "parts": {k: (v.to_dict() if v else None) for k, v in self.parts.items()},
            "step": _plain(dataclasses.asdict(self.step)),
            "eval": {k: v.to_dict() for k, v in self.evaluators.items()},
            "baselines": [b.to_dict() for b in self.baselines],
        }

    def key(self) -> str:
        """A content hash of everything that changes the result (baselines do not)."""
        config = self.config()
        config["train"] = {k: v for k, v in config["train"].items() if k not in _UNHASHED_TRAIN_KEYS}
        config["format"] = CONFIG_FORMAT
        for unhashed in ("recipe", "sweep", "baselines"):
            config.pop(unhashed)
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


ROOT_KEYS = ("data", "train", "eval", "baselines")
"""Sweep keys under these apply to the whole recipe; part keys (loss, encoder...) to every method."""


def sweep_points(recipe: Recipe) -> list[tuple[str, dict[str, Any]]]:
    """(key path of the grid, {dotted key: value}) for every point of the recipe's sweep."""
    sweep = recipe.model.sweep
    if not sweep:
        return [("sweep", {})]
    grids = [("sweep", sweep)] if isinstance(sweep, dict) else [(f"sweep.{i}", g) for i, g in enumerate(sweep)]
    points = []
    for where, grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            points.append((where, dict(zip(keys, values))))
    return points


def resolve(recipe: Recipe, registry: Registry) -> list[Cell]:
    """Every cell: each method at each sweep point; identical cells are kept once.

    `RecipeError` or `PluginError` for anything that does not fit, before any work.
    """
    cells: dict[tuple[str, str], Cell] = {}
    for where, point in sweep_points(recipe):
        root = {k: v for k, v in point.items() if k.split(".")[0] in ROOT_KEYS}
        for key in point:
            head = key.split(".")[0]
            if head not in ROOT_KEYS and head not in PARTS and head not in STEP_OPTIONS and head != "methods":
                known = [*ROOT_KEYS, *PARTS, *STEP_OPTIONS, "methods"]
                raise recipe.source.error(f"{where}.{key}", unknown_name("sweep key", head, known))
        at_point = _with_root_values(recipe, root, where)
        for method in at_point.model.methods:
            own = {k: v for k, v in point.items() if k not in root and not k.startswith("methods.")}
            prefix = f"methods.{method}."
            own.update({k[len(prefix):]: v for k, v in point.items() if k.startswith(prefix)})
            applies = {k: v for k, v in point.items() if k in root or not k.startswith("methods.") or k.startswith(prefix)}
            for cell in _resolve_cells(at_point, registry, method, own, where):
                cell = dataclasses.replace(cell, sweep=applies)
                cells.setdefault((method, cell.key()), cell)
    return list(cells.values())


def resolve_executor(recipe: Recipe, registry: Registry) -> ResolvedChoice:
    """The recipe's executor, looked up and its parameters validated."""
    choice = recipe.model.executor
    if choice.name is None:  # parameters only (`--jobs 2`): of the default executor
        choice = Choice(name="local", params=choice.params)
    return _resolve_choice(recipe, registry, "executors", choice, "executor.name",
                           {p: f"executor.params.{p}" for p in choice.params}, "executor.params")


def _with_root_values(recipe: Recipe, root: dict[str, Any], where: str) -> Recipe:
    """The recipe with swept data/train/eval values written in, validated again."""
    if not root:
        return recipe
    raw = copy.deepcopy(recipe.raw)
    for key, value in root.items():
        apply_override(raw, key, value, recipe.source.where(f"{where}.{key}"))
    try:
        model = RecipeModel.model_validate(raw)
    except pydantic.ValidationError as exc:
        loc, message = describe_validation_error(exc, known_keys(exc, RecipeModel))
        # the recipe was valid before: the error lies at or under a swept key (`train.epochs` of a swept `train`)
        raise recipe.source.error(f"{where}.{'.'.join(loc)}", message) from None
    return dataclasses.replace(recipe, model=model)


def _resolve_cells(
    recipe: Recipe, registry: Registry, method: str, swept: dict[str, Any], where: str
) -> list[Cell]:
    model = recipe.model
    data = _resolve_data(recipe, registry)
    train = model.train
    _check_device(recipe, train.device)
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
    )
    parts, step = _resolve_method(recipe, registry, method, _sweep_layer(recipe, swept, where), where)
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
        check = registry.get(choice.slot, choice.name).meta.get("check_cell")
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
        advice = component.meta.get("root_hint")  # the plugin's: root -> what the folder should hold
        hint = advice(data.root) if callable(advice) else ""
        raise recipe.source.error("data.root", f"directory '{data.root}' does not exist{hint}")
    params = _validate(recipe, component.schema, data.params, {}, "data.params", component.meta.get("check_params"))
    return data.model_copy(update={"params": params})


def _check_device(recipe: Recipe, device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise recipe.source.error("train.device", f"'{device}' asked for, but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise recipe.source.error("train.device", "'mps' asked for, but MPS is not available here")


@dataclass
class _Layered:
    """A choice being layered: its name, merged params, and where each came from."""

    choice: Choice
    name_path: str
    param_paths: dict[str, str]
    default_prefix: str


def _resolve_method(
    recipe: Recipe, registry: Registry, method: str, sweep_layer: Mapping[str, Any], sweep_where: str
) -> tuple[dict[str, ResolvedChoice | None], StepOptions]:
    spec = recipe.model.methods[method]
    layers: list[tuple[Mapping[str, Any], str]] = []
    if spec.preset is not None:
        component = registry.get("methods", spec.preset, where=recipe.source.where(f"methods.{method}.preset"))
        preset: MethodPreset = component.factory
        layers.append((_preset_parts(preset, spec.preset, component.provider), f"preset '{spec.preset}'"))
    layers.append((_set_fields(recipe.model.defaults), "defaults"))
    layers.append((_set_fields(spec), f"methods.{method}"))
    layers.append((sweep_layer, sweep_where))

    layered: dict[str, _Layered | None] = {}
    step: dict[str, Any] = {key: option.default for key, option in STEP_OPTIONS.items()}
    for values, prefix in layers:
        for key, value in values.items():
            if key in STEP_OPTIONS:
                step[key] = value
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

    parts: dict[str, ResolvedChoice | None] = {}
    for key, part in PARTS.items():
        entry = layered.get(key)
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
    _check_compatible(recipe, registry, parts)
    pairs = step["pairs"]
    return parts, StepOptions(
        pairs=pairs if isinstance(pairs, str) else tuple(tuple(p) for p in pairs),
        joint_forward=bool(step["joint_forward"]),
    )


def _resolve_choice(
    recipe: Recipe, registry: Registry, slot: str, choice: Choice,
    name_path: str, param_paths: dict[str, str], default_prefix: str,
) -> ResolvedChoice:
    component = registry.get(slot, choice.name, where=_where(recipe, name_path))
    params = _validate(recipe, component.schema, choice.params, param_paths, default_prefix,
                       component.meta.get("check_params"))
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


def _check_compatible(recipe: Recipe, registry: Registry, parts: dict[str, ResolvedChoice | None]) -> None:
    loss, negatives = parts["loss"], parts["negative_source"]
    assert loss is not None and negatives is not None
    needs = registry.get("losses", loss.name).meta.get("needs_negatives", False)
    gives = registry.get("negative_sources", negatives.name).meta.get("provides_negatives", True)
    if needs and not gives:
        raise _error(
            recipe, negatives.where,
            f"loss '{loss.name}' needs negatives, but negative source '{negatives.name}' gives none",
        )


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


def resolved_values(cell: Cell) -> dict[str, tuple[Any, str | None]]:
    """The cell's method as flat `key: (value, source)`: `optimizer` -> its name,
    `optimizer.lr_scaling` -> a parameter with the layer that set it (None: the
    component's default), `pairs` / `joint_forward` -> the step options."""
    values: dict[str, tuple[Any, str | None]] = {}
    for key, choice in cell.parts.items():
        values[key] = ("none" if choice is None else choice.name, None if choice is None else choice.where)
        for param, value in (choice.params if choice else {}).items():
            values[f"{key}.{param}"] = (_plain(value), choice.param_sources.get(param) if choice else None)
    for key, value in dataclasses.asdict(cell.step).items():
        values[key] = (_plain(value), None)
    return values


def method_differences(cells: list[Cell]) -> list[dict[str, str]]:
    """Per cell, `key -> value` of what a reader should see before training: the resolved
    values in which the methods differ (not those a sweep varies within a method), and any
    parameter kept from a preset although a later layer named the same component again
    (MoCo's `lr_scaling: linear` under `defaults.optimizer: sgd`), marked `(preset 'moco')`."""
    flat = [resolved_values(cell) for cell in cells]
    keys = list(dict.fromkeys(k for values in flat for k in values))

    def shown(values: dict[str, tuple[Any, str | None]], key: str) -> str:
        return json.dumps(values.get(key, (None, None))[0], sort_keys=True)

    by_method: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        by_method.setdefault(cell.method, []).append(i)
    swept = {k for k in keys if any(len({shown(flat[i], k) for i in idx}) > 1 for idx in by_method.values())}
    differ = {k for k in keys if k not in swept and len({shown(v, k) for v in flat}) > 1}
    rows = []
    for cell, values in zip(cells, flat):
        row = {}
        for key in [k for k in keys if k in values]:
            value, source = values[key]
            kept = source is not None and source.startswith("preset ") and "." in key and not _from_preset(cell, key)
            if key in differ or kept:
                row[key] = _short(value) + (f" ({source.split('.', 1)[0]})" if kept and source else "")
        rows.append(row)
    return rows


def _from_preset(cell: Cell, key: str) -> bool:
    """Whether the component of a part key (`optimizer.lr` -> optimizer) was named by the preset itself."""
    choice = cell.parts.get(key.split(".", 1)[0])
    return choice is not None and choice.where.startswith("preset ")


def _where(recipe: Recipe, path: str) -> str:
    if path.startswith("preset "):
        return path
    return recipe.source.where(path)


def _error(recipe: Recipe, path: str, message: str) -> RecipeError:
    return RecipeError(message, where=_where(recipe, path))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _short(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":")).strip('"')
