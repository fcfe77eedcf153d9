"""What the engine hands to the components that take part in running a recipe.

A baseline is called with a `BaselineContext`, an executor with an `ExecutionContext`;
both see cells as `CellSpec`s. These are protocols: the engine's classes
(`cmp.engine.baselines.BaselineContext`, `cmp.engine.executors.ExecutionContext`,
`cmp.config.cells.Cell`) satisfy them, so a plugin is typed against the API alone and
never imports the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from cmp.api.contracts import DataInfo, EncodedImages, Objective
from cmp.api.results import RunResult


class TrainSettings(Protocol):
    """The training settings of a cell a component may read (the recipe's `train.*`)."""

    @property
    def seed(self) -> int: ...

    @property
    def epochs(self) -> int: ...

    @property
    def steps(self) -> int | None:
        """A budget in optimizer steps instead of epochs (None: `epochs` decides)."""
        ...

    @property
    def batch_size(self) -> int: ...

    @property
    def precision(self) -> str: ...

    @property
    def channels_last(self) -> bool: ...


class PartChoice(Protocol):
    """One resolved part of a cell: the component's name and its validated parameters."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> Mapping[str, Any]: ...


class CellSpec(Protocol):
    """One cell as components see it: a method with every choice resolved.

    `config()` is the resolved configuration as plain data (what `config.yaml` holds),
    `key()` its content hash, `part(key)` a part every method has (`encoder`, `loss`...).
    """

    @property
    def recipe(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def train(self) -> TrainSettings: ...

    def part(self, key: str) -> PartChoice: ...

    def key(self) -> str: ...

    def config(self) -> dict[str, Any]: ...


class EvaluationSplits(Protocol):
    """The labelled splits an evaluation reads, as far as a component needs them."""

    @property
    def num_classes(self) -> int: ...

    @property
    def train_labels(self) -> Tensor:
        """int64 (N,) on the evaluation device."""
        ...

    @property
    def test_labels(self) -> Tensor: ...


class BaselineContext(Protocol):
    """What a baseline component is called with: the cell it follows, its data, helpers.

    `config` is the cell's resolved configuration (plain data). `build_part(key)` builds
    one of the cell's parts (`encoder`, `augmentation`) exactly as the cell does, seeded
    by its seed. `train(objective, images, key)` trains an `Objective` on
    `training_images` through the engine's loop, with the cell's optimizer, schedule,
    budget, batch size and precision. On a streamed data set (`streamed`) the training
    images are encoded (`EncodedImages`) and `train` streams them as the cells do.
    """

    @property
    def name(self) -> str:
        """The baseline's registered name."""
        ...

    @property
    def cell(self) -> CellSpec: ...

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def info(self) -> DataInfo: ...

    @property
    def streamed(self) -> bool: ...

    @property
    def splits(self) -> EvaluationSplits: ...

    @property
    def training_images(self) -> Tensor | EncodedImages:
        """The labelled training images: uint8 on the device, or a streamed set's encoded ones."""
        ...

    def input_shape(self) -> list[int]:
        """The evaluation input's shape per image (C, H, W)."""
        ...

    def build_part(self, key: str, params: Mapping[str, Any] | None = None) -> Any:
        """The cell's part `key`, built: an `Encoder` for "encoder", an `Augmentation` for
        "augmentation"; with `params`, those parameters instead of the cell's (the same
        encoder without its weights file: `cmp.weights.without_weights`)."""
        ...

    def effective_optimizer(self) -> dict[str, Any]:
        """The optimizer's class and hyperparameters as built (the effective learning
        rate, not how its scaling was spelled), and the schedule."""
        ...

    def train(self, objective: Objective, images: Tensor | EncodedImages, key: str) -> None: ...


class Baseline(Protocol):
    """A reference representation, evaluated under the same protocol as every method.

    - `depends_on(context)`: plain data the result depends on; its hash is the cache key,
      so two cells that would give the same baseline share one result. Use effective
      values (`context.effective_optimizer()`), not how a recipe spelled them.
    - `label(context)`: the row label in reports.
    - `representation(context)`: a module from the evaluation input (the augmentation's
      deterministic `preprocess` of the images) to features (N, F); it may train one
      through `context.train(objective, images, key)`, the loop every method trains in.

    An optional attribute `reference` says what the baseline is for: "floor" (the
    default: a self-supervised method should beat it, and the report flags one that does
    not, as raw pixels and a random encoder) or "ceiling" (an upper reference such as a
    supervised encoder, shown but not flagged). An optional attribute `trains = True` says
    it trains on the cell's budget, so an evaluate-only cell (`train.epochs: 0`), which has
    none, does not ask for it.
    """

    def depends_on(self, context: BaselineContext) -> dict[str, Any]: ...

    def label(self, context: BaselineContext) -> str: ...

    def representation(self, context: BaselineContext) -> nn.Module: ...


class CellTask(Protocol):
    """One cell's whole run, picklable: a pool worker or a Ray task calls it and gets the
    cell's `RunResult` (resume, failure records and caching as in the driver)."""

    def __call__(self) -> RunResult: ...


class ExecutionContext(Protocol):
    """What an executor is given besides the cells.

    `pending(cells)`: the cached results by cell index (already reported through
    `on_done`) and the indices still to run, so cached cells never leave the driver.
    `run_in_order(cells)`: every cell in this process, one after another. `task(cell,
    threads, processes)`: a picklable `CellTask` running one cell in another process,
    with `threads` torch threads, on `processes` processes together (DDP) when more than
    one. `failed(cell, reason)`: a failed result recorded in the cell's run directory, for
    a cell whose task died before writing one. `on_done(result)`: report a result in the
    driver as its cell finishes.
    """

    @property
    def out_dir(self) -> Path: ...

    def on_done(self, result: RunResult) -> None: ...

    def pending(self, cells: Sequence[CellSpec]) -> tuple[dict[int, RunResult], list[int]]: ...

    def run_in_order(self, cells: Sequence[CellSpec]) -> list[RunResult]: ...

    def task(self, cell: CellSpec, threads: int | None = None, processes: int = 1) -> CellTask: ...

    def failed(self, cell: CellSpec, reason: str) -> RunResult: ...


class Executor(Protocol):
    """How a recipe's cells are run (in this process, worker processes, a Ray cluster).

    `run(cells, context)` returns one `RunResult` per cell, in the cells' order, calling
    `context.on_done(result)` as each finishes. The `ExecutionContext` keeps the
    semantics in the engine: resume, failure records and caching behave the same
    whichever executor runs the cells.
    """

    def run(self, cells: Sequence[CellSpec], context: ExecutionContext) -> list[RunResult]: ...
