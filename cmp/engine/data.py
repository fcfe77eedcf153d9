"""Loading a recipe's data set through its plugin, checking it, and taking subsets.

A data set plugin returns either `ImageData` (uint8 tensors in memory) or `StreamedData`
(encoded images read from disk as training goes); the engine accepts both. Subsets of a
streamed set are seeded index subsets (`cmp.streaming.Subset`), the same choice as for a
tensor data set of the same size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmp.api.contracts import ImageData, StreamedData
from cmp.errors import CmpError, DataError
from cmp.api.registry import Registry
from cmp.config.recipe import DataSection


Data = ImageData | StreamedData
"""What a data set plugin returns."""


def load_data(data: DataSection, registry: Registry) -> Data:
    """The data set a cell's `data` section names, with its subsets taken (on the CPU)."""
    component = registry.get("datasets", data.dataset)
    root = Path(data.root).expanduser() if data.root else None
    try:
        loaded = component.build(root, data.download, data.split_seed, **data.params)
    except CmpError:
        raise
    except Exception as exc:  # a plugin's own failure, named with the plugin
        raise DataError(
            f"loading failed: {type(exc).__name__}: {exc}",
            where=f"dataset '{component.name}' from {component.provider}",
        ) from None
    check_image_data(loaded, f"dataset '{component.name}' from {component.provider}")
    return take_subsets(loaded, data.subset, data.test_subset, data.split_seed)


def check_image_data(data: Any, where: str) -> None:
    """A data set plugin must return uint8 (N, C, H, W) images with int64 labels in range,
    or a streamed set whose labels are in range (its images are read as training goes)."""
    if isinstance(data, StreamedData):
        check_streamed_data(data, where)
        return
    if not isinstance(data, ImageData):
        raise DataError(f"returned {type(data).__name__}, not ImageData or StreamedData", where=where)
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(f"{split} images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}", where=where)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(f"{split} labels must be (N,) for {images.shape[0]} images, got {tuple(labels.shape)}", where=where)
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(data.classes)):
            raise DataError(f"{split} labels must lie in [0, {len(data.classes)})", where=where)
    if data.train_images.shape[1:] != data.test_images.shape[1:]:
        raise DataError("train and test images differ in shape", where=where)


def check_streamed_data(data: StreamedData, where: str) -> None:
    """Classes, labels (int64 (N,) in range, one per image), channels, size and statistics."""
    if not data.classes:
        raise DataError("names no classes", where=where)
    if data.channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {data.channels}", where=where)
    if data.size < 1:
        raise DataError(f"size must be at least 1, got {data.size}", where=where)
    if len(data.mean) != data.channels or len(data.std) != data.channels or min(data.std) <= 0:
        raise DataError(f"mean and std must give {data.channels} value(s), std > 0", where=where)
    for split in ("train", "test"):
        images = getattr(data, split)
        labels = np.asarray(images.labels)
        if len(images) == 0:
            raise DataError(f"the {split} split holds no images", where=where)
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            raise DataError(f"{split} labels must be int64 (N,) for {len(images)} images, got {labels.dtype} "
                            f"{labels.shape}", where=where)
        if labels.min() < 0 or labels.max() >= len(data.classes):
            raise DataError(f"{split} labels must lie in [0, {len(data.classes)})", where=where)


def train_count(data: Data) -> int:
    """The images a training epoch draws from (STL-10's unlabelled ones included)."""
    if isinstance(data, StreamedData):
        return len(data.train)
    unlabeled = 0 if data.unlabeled_images is None else data.unlabeled_images.shape[0]
    return int(data.train_images.shape[0] + unlabeled)


def subset_rows(total: int, count: int | None, seed: int, key: str) -> torch.Tensor | None:
    """Sorted indices of a seeded random subset of `count` of `total` images (None: all)."""
    if count is None:
        return None
    if count > total:
        raise DataError(f"asks for {count} images, but the split holds {total}", where=f"data.{key}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]
    return order.sort().values


def take_subsets(data: Data, subset: int | None, test_subset: int | None, seed: int) -> Data:
    """Random subsets of the train and test splits, the same for a given seed."""
    if isinstance(data, StreamedData):
        from cmp.streaming import Subset

        train_rows = subset_rows(len(data.train), subset, seed, "subset")
        test_rows = subset_rows(len(data.test), test_subset, seed + 1, "test_subset")
        return dataclasses.replace(
            data,
            train=data.train if train_rows is None else Subset(data.train, train_rows.numpy()),
            test=data.test if test_rows is None else Subset(data.test, test_rows.numpy()),
        )

    def pick(images: torch.Tensor, labels: torch.Tensor, count: int | None, key: str, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = subset_rows(images.shape[0], count, seed + offset, key)
        return (images, labels) if rows is None else (images[rows], labels[rows])

    train_x, train_y = pick(data.train_images, data.train_labels, subset, "subset", 0)
    test_x, test_y = pick(data.test_images, data.test_labels, test_subset, "test_subset", 1)
    return ImageData(data.name, train_x, train_y, test_x, test_y, data.classes, data.unlabeled_images)
