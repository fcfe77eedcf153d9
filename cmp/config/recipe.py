"""Recipes: a YAML file (plus `--set KEY=VALUE` overrides) -> a validated `Recipe`.

Only the shape and the types are checked here; `cmp.config.cells` then resolves each method's
slot choices against the registry and validates their parameters. Every error is one
line naming the file and the key path (or the `--set` that caused it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union, get_args, get_origin

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from cmp.api.params import Int, NonNegative, NonNegativeInt, Positive, PositiveInt, describe_validation_error
from cmp.api.slots import PARTS
from cmp.errors import RecipeError
from cmp.suggest import closest, did_you_mean, unknown_name

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Strict):
    """A slot choice: `{name: nt_xent, params: {temperature: 0.2}}` or just `nt_xent`.

    Without `name` it changes only parameters of the component an earlier layer chose
    (`--set methods.simclr.loss.params.temperature=0.2`).
    """

    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and value.get("params") is None and "params" in value:
            return {**value, "params": {}}
        return value


Pairs = Union[Literal["symmetric", "one_way", "multicrop"], list[tuple[NonNegativeInt, NonNegativeInt]]]
"""A named pairing of views, or explicit [anchor view, positive view] pairs."""

if TYPE_CHECKING:
    class Parts(_Strict):
        """Slot choices and step options (built from `cmp.api.slots.PARTS` below)."""

        pairs: Pairs | None = None
        joint_forward: bool | None = None

        def __getattr__(self, key: str) -> Choice | None: ...
else:
    Parts = create_model(
        "Parts",
        __base__=_Strict,
        __doc__="Slot choices (one key per part of `cmp.api.slots.PARTS`) and step options.",
        **{key: (Optional[Choice], None) for key in PARTS},
        pairs=(Optional[Pairs], None),
        joint_forward=(Optional[bool], None),
    )


def _default_evaluators() -> dict[str, dict[str, Any] | None]:
    """kNN and the linear probe, with their default parameters."""
    return {"knn": {}, "linear": {}}


class MethodSpec(Parts):
    """One method of the comparison: a preset plus the parts it changes.

    `evaluate_only: true` evaluates its encoder as built (and loaded from its `weights:`
    file), without training, beside the recipe's trained methods: `train.epochs: 0` for
    this method alone.
    """

    preset: str | None = None
    evaluate_only: bool = False


class DataSection(_Strict):
    """Which data set, where it lives, and how much of it to use."""

    dataset: str
    root: str | None = None
    subset: PositiveInt | None = None
    test_subset: PositiveInt | None = None
    split_seed: Int = 0
    download: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


class TrainSection(_Strict):
    """How long and how to train; shared by every method of the recipe."""

    epochs: NonNegativeInt = 10
    """0: evaluate-only cells: the encoder is evaluated as built (and loaded from its
    `weights:` file), with no optimizer, augmentation or training loop."""
    steps: PositiveInt | None = None
    """A fixed number of optimizer steps instead of `epochs` (the batch-size question at a
    fixed step count): training runs ceil(steps / steps per epoch) epochs, the last one cut
    short, and the learning-rate schedule spans `steps`."""
    batch_size: PositiveInt = 256
    seed: Int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    """`auto`: the precision that trains fastest on the device, by what it supports
    (`cmp.precision`: bf16 on a GPU with native bf16 or a CPU with AMX / AVX-512 BF16,
    else fp32), decided on the machine that resolves the recipe (under `--executor ray`,
    the driver). A cell records the resolved value, never `auto`."""
    channels_last: bool = False
    compile: bool = False
    log_every: PositiveInt = 10
    eval_every: NonNegativeInt = 0
    eval_subset: PositiveInt | None = 2000
    """Evaluations during training (every `eval_every` epochs) use a fixed subset of this
    many training and test images, so they cost little of a cell's time; the final
    evaluation uses every image. None: all images every time."""
    checkpoint_minutes: Positive = 10.0
    collapse_std: NonNegative = 1e-4
    threads: PositiveInt | None = None
    micro_batch: PositiveInt | None = None
    """Gradient caching: a step's embeddings computed in chunks of this many images, the
    loss over the whole batch, then the chunks again with its gradient (exact without
    BatchNorm; see cmp.engine.grad_cache). None: the whole batch at once."""
    sync_batchnorm: bool = False
    """With several processes, BatchNorm statistics over the global batch (SyncBatchNorm)."""
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """torch.distributed backend with several processes: auto is NCCL on GPUs, gloo on CPUs."""

    @property
    def evaluate_only(self) -> bool:
        """Whether the cells evaluate their encoder without training it (`epochs: 0`)."""
        return self.epochs == 0 and self.steps is None

    @model_validator(mode="after")
    def _no_steps_without_epochs(self) -> TrainSection:
        if self.epochs == 0 and self.steps is not None:
            raise ValueError("epochs: 0 evaluates without training, so it takes no steps budget; leave out train.steps")
        return self

    def budget(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epochs, total optimizer steps) for an epoch of `steps_per_epoch` steps."""
        if self.steps is None:
            return self.epochs, self.epochs * steps_per_epoch
        return max(1, math.ceil(self.steps / max(1, steps_per_epoch))), self.steps

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value


class ClaimSpec(_Strict):
    """What an ablation should show: `factor`'s values in `order`, best first.

    `factor` is a swept key (`loss.name`, `train.batch_size`) or `method`; the report
    checks the ordering with paired differences over seeds in every context where those
    values ran, on `metrics` (default: every percentage metric).
    """

    factor: str
    order: list[Any] = Field(min_length=2)
    metrics: list[str] | None = None
    source: str | None = None


class RecipeModel(_Strict):
    """The whole recipe file."""

    name: str | None = None
    description: str | None = None
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    defaults: Parts = Field(default_factory=Parts)
    methods: dict[str, MethodSpec]
    eval: dict[str, dict[str, Any] | None] = Field(default_factory=_default_evaluators)
    baselines: list[str] = Field(default_factory=lambda: ["raw_pixels", "random_init"])
    baseline_method: str | None = None
    """The method whose cells the baselines follow (its encoder, augmentation, optimizer and
    budget, once per seed); None: every cell's own. A comparison of many methods names one,
    so that one supervised baseline per seed stands beside all of them."""
    reference: str | None = None
    """The method every other is compared with in pairs (`cmp.report.reference`): the report's
    "Against <reference>" section, Holm-corrected over those comparisons, in place of every
    method against every other. Not part of any cell key."""
    executor: Choice = Field(default_factory=lambda: Choice(name="local"))
    """How the cells run: `local` (this process, or `--jobs N` worker processes) or `ray`."""
    sweep: dict[str, list[Any]] | list[dict[str, list[Any]]] | None = None
    claims: list[ClaimSpec] = Field(default_factory=list)
    """Orderings the report tests with paired statistics (see `cmp.report.claims`)."""

    @field_validator("sweep")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        for grid in [value] if isinstance(value, dict) else value or []:
            for key, values in grid.items():
                if not values:
                    raise ValueError(f"{key} lists no values")
        return value

    @field_validator("baseline_method", "reference")
    @classmethod
    def _known_method(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        methods = info.data.get("methods") or {}
        if value is not None and value not in methods:
            raise ValueError(unknown_name("method", value, methods))
        return value

    @field_validator("methods")
    @classmethod
    def _some_methods(cls, value: dict[str, MethodSpec]) -> dict[str, MethodSpec]:
        if not value:
            raise ValueError("names no method; add at least one under methods:")
        for name in value:
            if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
                raise ValueError(f"method name {name!r} may hold only letters, digits, '_', '.', '-'")
        return value


@dataclass(frozen=True)
class Source:
    """Where a recipe came from: its file and the overrides, for error messages.

    `overrides` maps each overridden key to what the user typed: `--set train.epochs=1`,
    or a flag such as `--device cuda`.
    """

    path: Path
    overrides: dict[str, str] = field(default_factory=dict)

    def where(self, key_path: str) -> str:
        """`file: key.path`, or the `--set` (or flag) that set this key or one of its parents."""
        for key, typed in self.overrides.items():
            if key_path == key or key_path.startswith(key + "."):
                return typed
        return f"{self.path}: {key_path}" if key_path else str(self.path)

    def error(self, key_path: str, message: str) -> RecipeError:
        return RecipeError(message, where=self.where(key_path))


@dataclass(frozen=True)
class Recipe:
    """A validated recipe and its source."""

    model: RecipeModel
    source: Source
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.name or self.source.path.stem


def parse_override(text: str, typed: str | None = None) -> tuple[str, Any]:
    """`train.epochs=1` -> ("train.epochs", 1); the value is read as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.match(r"^[A-Za-z0-9_.\-]+$", key) or ".." in key:
        raise RecipeError(f"expected KEY=VALUE with a dotted key such as train.epochs=1, got {text!r}", where="--set")
    try:
        return key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise RecipeError(f"value is not valid YAML: {exc}", where=typed or f"--set {text}") from None


def apply_override(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set `a.b.c` in nested dicts, creating missing levels; errors name `where`.

    A slot given by name alone (`encoder: convnet`) is shorthand for `{name: convnet}`,
    so `--set defaults.encoder.params.widths=[8]` reaches inside it.
    """
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and part in PARTS:
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise RecipeError(f"cannot set a key inside {prefix}, which is a {type(child).__name__}", where=where)
        node = child
    node[parts[-1]] = value


def read_yaml(path: Path) -> dict[str, Any]:
    """`yaml.safe_load` a mapping; errors name the file (and line)."""
    if not path.is_file():
        raise RecipeError(f"recipe file not found{closest_file(path, [path.parent, Path('recipes')])}", where=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(yaml_problem(exc), where=str(path)) from None
    except UnicodeDecodeError:
        raise RecipeError("not a UTF-8 text file", where=str(path)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe is a mapping of keys, got {type(data).__name__}", where=str(path))
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as `line N: not valid YAML: ...`, N the line where the problem starts.

    An unclosed flow collection (`{...` or `[...`) or quoted string is noticed only at a
    later line; the parser's context mark says where it was opened, and that is the
    line to fix. Other errors (indentation, a stray `:`) are at the problem mark itself.
    """
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    problem_mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None) or ""
    context_mark = getattr(exc, "context_mark", None)
    opened = context_mark is not None and any(word in context for word in ("flow", "quoted"))
    if opened and context_mark is not None and problem_mark is not None and problem_mark.line != context_mark.line:
        what = context.removeprefix("while parsing ").removeprefix("while scanning ")
        return (f"line {context_mark.line + 1}: not valid YAML: {what} opened here is not closed "
                f"({problem} on line {problem_mark.line + 1})")
    mark = context_mark if opened else problem_mark
    line = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{line}not valid YAML: {problem}"


def closest_file(path: Path, folders: list[Path]) -> str:
    """` (did you mean 'recipes/x.yaml'?)` for the YAML file in `folders` named closest to `path`."""
    files = {f.name: f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.y*ml"))}
    name = closest(path.name, files)
    return f" (did you mean '{files[name]}'?)" if name else ""


Override = Union[str, tuple[str, str]]
"""`KEY=VALUE` (a `--set`), or (`KEY=VALUE`, what the user typed) for a flag such as `--device cuda`."""


def load_recipe(path: str | Path, overrides: Sequence[Override] = ()) -> Recipe:
    """Read, override and validate a recipe; `RecipeError` on any problem.

    Errors caused by an override name it as typed: `--set KEY=VALUE`, or the flag.
    """
    path = Path(path)
    raw = read_yaml(path)
    set_keys: dict[str, str] = {}
    for override in overrides:
        text, typed = (override, f"--set {override}") if isinstance(override, str) else override
        key, value = parse_override(text, typed)
        apply_override(raw, key, value, typed)
        set_keys[key] = typed
    try:
        model = RecipeModel.model_validate(raw)
    except pydantic.ValidationError as exc:
        loc, message = describe_validation_error(exc, known_keys(exc, RecipeModel))
        raise Source(path, set_keys).error(".".join(loc), message) from None
    check_claims(model, Source(path, set_keys))
    return Recipe(model, Source(path, set_keys), raw)


def check_claims(model: RecipeModel, source: Source) -> None:
    """Each claim names `method` or a swept key, and only values that ran."""
    grids = [model.sweep] if isinstance(model.sweep, dict) else model.sweep or []
    swept: dict[str, list[Any]] = {}
    for grid in grids:
        for key, values in grid.items():
            swept.setdefault(key, []).extend(values)
    for index, claim in enumerate(model.claims):
        known = list(model.methods) if claim.factor == "method" else swept.get(claim.factor)
        if known is None:
            raise source.error(f"claims.{index}.factor", f"'{claim.factor}' is neither 'method' nor a swept key"
                               f"{did_you_mean(claim.factor, swept)}; swept: {', '.join(swept) or 'nothing'}")
        missing = [v for v in claim.order if v not in known]
        if missing:
            raise source.error(f"claims.{index}.order", f"{missing[0]!r} is not a value of {claim.factor}; "
                               f"it takes {', '.join(map(str, known))}")


def known_keys(exc: pydantic.ValidationError, root: type[BaseModel]) -> list[str]:
    """The keys allowed beside an unknown one, at its depth under `root` (the model that
    was validated), for the 'did you mean' hint: `loss.parms` is told about `params`."""
    err = exc.errors(include_url=False)[0]
    if err["type"] != "extra_forbidden":
        return []
    model: Any = root
    dict_value: Any = None
    for part in err["loc"][:-1]:
        if dict_value is not None:  # this part is a key of a dict field, e.g. a method name
            model, dict_value = dict_value, None
            continue
        field = model.model_fields.get(str(part))
        inner, is_dict = _model_in(field.annotation) if field is not None else (None, False)
        if inner is None:
            return []
        if is_dict:
            dict_value = inner
        else:
            model = inner
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> tuple[Any, bool]:
    """(model class, whether it is a dict's value) inside `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = get_args(annotation)
    if get_origin(annotation) is dict and args:
        inner, _ = _model_in(args[-1])
        return inner, inner is not None
    for arg in args:
        inner, is_dict = _model_in(arg)
        if inner is not None:
            return inner, is_dict
    return None, False
