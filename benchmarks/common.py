"""What the benchmarks share: their training data, a cell resolved as `cmp run` would, one
epoch of the engine's loop, and waiting for the device. (`benchmarks.machine` says what
they ran on.)"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from cmp.api.contracts import DataInfo
from cmp.api.loader import Plugins
from cmp.api.results import RunInfo
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import Model
from cmp.engine.trainer import TrainConfig, Trainer

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Data:
    """Training images (uint8, CPU) and what components are told about them."""

    name: str
    images: Tensor
    info: DataInfo


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fashion_mnist_or_synthetic(n: int) -> Data:
    """Fashion-MNIST's first `n` training images when installed, else random 28x28 grey ones."""
    from cmp_plugins.datasets import fashion_mnist

    try:
        data = fashion_mnist(FASHION_MNIST, download=False, split_seed=0)
        return Data("Fashion-MNIST 28x28 grey", data.train_images[:n], data.info())
    except Exception:  # not installed here: the speed does not depend on the pixels
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        return Data("synthetic 28x28 grey", images, DataInfo("synthetic", 1, 28, 28, 10, (0.5,), (0.29,)))


def resolve_cell(plugins: Plugins, method: str, parts: dict[str, Any], train: dict[str, Any]) -> Cell:
    """One cell of a method preset with `parts` changed (a recipe written and resolved as `cmp run` does)."""
    raw = {
        "name": "benchmark",
        "data": {"dataset": "fashion_mnist"},
        "train": {"epochs": 1, "seed": 0, "collapse_std": 0.0, **train},
        "methods": {method: {"preset": method, **parts}},
        "eval": {},
        "baselines": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "benchmark.yaml"
        path.write_text(yaml.safe_dump(raw))
        (cell,) = resolve(load_recipe(path), plugins.registry)
    return cell


def fit(model: Model, cell: Cell, images: Tensor, batch: int, generator: torch.Generator, run: RunInfo, hooks: Any) -> None:
    """One epoch of the engine's own loop over `images` (on the device)."""
    config = TrainConfig(
        epochs=1, batch_size=batch, log_every=cell.train.log_every, precision=cell.train.precision,
        channels_last=cell.train.channels_last, collapse_std=cell.train.collapse_std,
    )
    Trainer(model.learner, model.augmentation, images, model.optimizer, model.schedule, generator, config, run, hooks).fit()
