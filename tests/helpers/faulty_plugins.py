"""A plugin module for tests (`cmp -p tests.helpers.faulty_plugins`): components that fail
in the ways the engine must survive (NaN, a crash, a raising factory, collapse, bad data)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import DataInfo, Head, ImageData, Negatives
from cmp.api.hookspecs import Register
from cmp.api.params import NonNegativeInt
from cmp_plugins.datasets import digits


def nan_after(anchors: Tensor, positives: Tensor, negatives: Negatives | None, *, calls: NonNegativeInt = 0) -> Tensor:
    """A loss that is finite for `calls` calls, then NaN."""
    nan_after.count = getattr(nan_after, "count", 0) + 1  # type: ignore[attr-defined]
    loss = (anchors - positives).square().mean()
    return loss * float("nan") if nan_after.count > calls else loss  # type: ignore[attr-defined]


def crash_after(anchors: Tensor, positives: Tensor, negatives: Negatives | None, *, calls: NonNegativeInt = 0) -> Tensor:
    """A loss that raises a plain RuntimeError after `calls` calls (a bug inside a component)."""
    crash_after.count = getattr(crash_after, "count", 0) + 1  # type: ignore[attr-defined]
    if crash_after.count > calls:  # type: ignore[attr-defined]
        raise RuntimeError("boom inside the loss")
    return (anchors - positives).square().mean()


def broken_encoder(data: DataInfo, *, width: int = 8) -> nn.Module:
    """An encoder whose factory raises."""
    raise ValueError(f"cannot build a {width}-wide encoder")


class ConstantHead(Head):
    """A head whose output does not depend on its input: the representation has collapsed."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = 8
        self.bias = nn.Parameter(torch.ones(8))
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.bias + self.scale * x[:, :1]


def constant(in_dim: int) -> ConstantHead:
    """A collapsed projection head (every embedding the same)."""
    return ConstantHead(in_dim)


def bad_labels(root: Path | None, download: bool, split_seed: int) -> ImageData:
    """Digits with one test label out of range."""
    data = digits(root, download, split_seed)
    data.test_labels[0] = len(data.classes)
    return data


def float_images(root: Path | None, download: bool, split_seed: int) -> ImageData:
    """Digits with float training images instead of uint8."""
    data = digits(root, download, split_seed)
    data.train_images = data.train_images.float()
    return data


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("nan_after", nan_after)
    register("crash_after", crash_after)


@hookimpl
def cmp_register_encoders(register: Register) -> None:
    register("broken_encoder", broken_encoder)


@hookimpl
def cmp_register_projection_heads(register: Register) -> None:
    register("constant", constant)


@hookimpl
def cmp_register_datasets(register: Register) -> None:
    register("bad_labels", bad_labels)
    register("float_images", float_images)
