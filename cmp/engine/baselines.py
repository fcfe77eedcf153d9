"""Baselines under the same evaluation protocol as every method.

A baseline is a component of the `baselines` slot (`cmp.api.contexts.Baseline`); the
built-ins are raw pixels, a randomly initialised encoder and a supervised encoder
(`plugins/baselines.py`). Each is computed once per distinct `depends_on` and cached as
`<out>/baselines/<name>-<key>.json`, so every recipe on the same data reuses it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cmp.api.contexts import Baseline
from cmp.api.contracts import DataInfo, EncodedImages, Objective
from cmp.api.results import BaselineResult, RunInfo
from cmp.config.cells import Cell, ResolvedChoice
from cmp.engine.build import BuildContext, build, build_parts, resolve_device
from cmp.engine.cell_run import progress_reporter
from cmp.engine.data import DataSet, dataset
from cmp.engine.rundir import write_json
from cmp.engine.runner import Runner
from cmp.engine.trainer import TrainConfig, Trainer
from cmp.errors import CmpError
from cmp.evaluation.features import evaluate_representation
from cmp.evaluation.splits import Splits


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline to compute: which component, and the cell whose data and protocol it follows."""

    choice: ResolvedChoice
    cell: Cell


class BaselineContext:
    """What a baseline component sees (`cmp.api.BaselineContext`): the cell it follows,
    its data, and helpers.

    `config` is the cell's resolved configuration (plain data). `build_part(key)` builds
    one of the cell's parts (`encoder`, `augmentation`); `train(objective, ...)` trains a
    module through the engine's `Trainer` with the cell's optimizer, schedule, epochs,
    batch size and precision. On a streamed data set (`streamed`), `splits` are
    `StreamedSplits` and `training_images` the encoded training images, which `train`
    streams as the cells do.
    """

    def __init__(self, runner: Runner, spec: BaselineSpec, device_name: str | None = None) -> None:
        self.runner = runner
        self.cell = spec.cell
        self.name = spec.choice.name
        self.config = spec.cell.config()
        self.device = resolve_device(device_name or spec.cell.train.device)
        self.dir = runner.out_dir / "baselines"

    @functools.cached_property
    def data(self) -> DataSet:
        return dataset(self.runner.data_for(self.cell.data))

    @property
    def streamed(self) -> bool:
        """Whether the data set is read from disk as it goes (`StreamedData`)."""
        return self.data.streamed

    @functools.cached_property
    def info(self) -> DataInfo:
        return self.data.info()

    @functools.cached_property
    def augmentation(self) -> Any:
        return self.build_part("augmentation").to(self.device)

    @functools.cached_property
    def splits(self) -> Splits:
        return self.data.evaluation_splits(self.device)

    @property
    def training_images(self) -> torch.Tensor | EncodedImages:
        """The labelled training images: uint8 on the device, or encoded images of a streamed set."""
        return self.splits.training_images

    def input_shape(self) -> list[int]:
        """The evaluation input's shape per image (C, H, W): what the preprocess makes of the data."""
        return list(self.augmentation.preprocess(self.data.sample_input(self.device)).shape[1:])

    def build_part(self, key: str, params: Mapping[str, Any] | None = None) -> Any:
        """One part of the cell, built exactly as the cell builds it (seeded by the cell's
        seed); with `params`, those parameters instead of the cell's."""
        torch.manual_seed(self.cell.train.seed)
        context = BuildContext(self.info, self.cell.train.batch_size, 1, self.cell.train.epochs)
        cell = self.cell
        choice = cell.parts[key]
        if params is not None and choice is not None:
            cell = dataclasses.replace(cell, parts={**cell.parts, key: dataclasses.replace(choice, params=dict(params))})
        build_parts(cell, self.runner.registry, context, [key])
        return context.built[key]

    def effective_optimizer(self) -> dict[str, Any]:
        """The optimizer's class and hyperparameters as built for this batch size (the
        effective learning rate, not how its scaling was spelled), plus the schedule."""
        probe = nn.Parameter(torch.zeros(2, 2))
        context = BuildContext(self.info, self.cell.train.batch_size, 1, self.cell.train.epochs)
        context.trainable = nn.ParameterList([probe])
        build_parts(self.cell, self.runner.registry, context, ["optimizer"])
        optimizer = context.built["optimizer"]
        group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params" and _plain_scalar(v)}
        schedule = self.cell.parts["schedule"]
        return {"class": type(optimizer).__name__, "group": group, "schedule": schedule.to_dict() if schedule else None}

    def train(self, objective: Objective, images: torch.Tensor | EncodedImages, key: str) -> None:
        """Train `objective` on `images` (a uint8 tensor on the device, or a streamed set's
        encoded images) with the cell's optimizer, schedule and budget."""
        train = self.cell.train
        count = len(images)
        batch = min(train.batch_size, count)
        steps_per_epoch = count // batch
        epochs, total_steps = train.budget(steps_per_epoch)
        context = BuildContext(self.info, batch, steps_per_epoch, epochs, max_steps=total_steps)
        context.trainable = objective  # type: ignore[assignment]  # an Objective is an nn.Module: its parameters are trained
        build_parts(self.cell, self.runner.registry, context, ["optimizer", "schedule"])
        run = RunInfo(f"{self.name} baseline", self.cell.recipe, self.name, key, self.dir, {}, self.device,
                      epochs, steps_per_epoch, total_steps)
        source = self.data.source(images, batch, train.seed, self.device)
        trainer = Trainer(
            objective, self.augmentation, source, context.built["optimizer"], context.built["schedule"],
            torch.Generator(device=self.device).manual_seed(train.seed),
            TrainConfig(epochs=epochs, batch_size=batch, log_every=train.log_every,
                        precision=train.precision, channels_last=train.channels_last, max_steps=total_steps),
            run, self.runner.hooks, device=self.device,
        )
        try:
            trainer.fit()
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def _plain_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None or (
        isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)
    )


def baseline_specs(cells: list[Cell]) -> list[BaselineSpec]:
    """Every (baseline, cell) pair the cells ask for, in order; duplicates go at compute time."""
    return [BaselineSpec(choice, cell) for cell in cells for choice in cell.baselines]


def baseline_key(component: Baseline, context: BaselineContext) -> str:
    """The hash of what a baseline depends on, with the evaluation protocol and data."""
    spec = {
        "baseline": context.name, "data": context.config["data"], "eval": context.config["eval"],
        **component.depends_on(context),
    }
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def compute_baselines(runner: Runner, specs: list[BaselineSpec], device_name: str | None = None) -> list[BaselineResult]:
    """Each distinct baseline once (cached on disk); a failure is recorded, never raised.
    A baseline that trains (`trains = True`) is not computed for an evaluate-only cell."""
    done: dict[str, BaselineResult] = {}
    for spec in specs:
        if spec.cell.train.evaluate_only and getattr(build(runner.registry, spec.choice), "trains", False):
            continue
        result = compute_baseline(runner, spec, device_name)
        done.setdefault(f"{result.baseline}-{result.key}", result)
    return list(done.values())


def compute_baseline(runner: Runner, spec: BaselineSpec, device_name: str | None = None) -> BaselineResult:
    """Evaluate one baseline, or read it from the cache; a failure is recorded, not raised."""
    context = BaselineContext(runner, spec, device_name)
    component: Baseline = build(runner.registry, spec.choice)
    label, key = spec.choice.name, "?"
    try:
        key = baseline_key(component, context)
        label = component.label(context)
        return _compute(runner, context, component, key, label)
    except Exception as exc:  # a failed baseline must not lose the cells already computed
        reason = str(exc) if isinstance(exc, CmpError) else f"{type(exc).__name__}: {exc}"
        return BaselineResult(baseline=spec.choice.name, label=label, key=key, status="failed", reason=reason)


def _reference(component: Baseline) -> Literal["floor", "ceiling"]:
    """The component's `reference` ("floor" unless it says "ceiling")."""
    return "ceiling" if getattr(component, "reference", "floor") == "ceiling" else "floor"


def _compute(runner: Runner, context: BaselineContext, component: Baseline, key: str, label: str) -> BaselineResult:
    path = context.dir / f"{context.name}-{key}.json"
    cached = _read(path)
    if cached is not None:
        return cached.model_copy(update={"label": label, "cached": True, "reference": _reference(component)})
    started = time.perf_counter()
    representation = component.representation(context).to(context.device)
    run = RunInfo(label, context.cell.recipe, label, key, context.dir, {}, context.device)
    metrics = evaluate_representation(
        representation, context.augmentation.preprocess, context.splits,
        {name: build(runner.registry, choice) for name, choice in context.cell.evaluators.items()},
        progress=progress_reporter(runner.hooks, run), channels_last=context.cell.train.channels_last,
        augmentation=context.augmentation,
    )
    result = BaselineResult(
        baseline=context.name, label=label, key=key, seed=context.cell.train.seed, reference=_reference(component),
        metrics=metrics, wall_time_s=time.perf_counter() - started,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


def _read(path: Path) -> BaselineResult | None:
    if not path.is_file():
        return None
    try:
        return BaselineResult.from_json(path.read_text())
    except (OSError, ValueError):
        return None
