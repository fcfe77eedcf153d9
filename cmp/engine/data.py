"""Loading a recipe's data set through its plugin, checking it, and taking subsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cmp.api.contracts import ImageData
from cmp.errors import CmpError, DataError
from cmp.api.registry import Registry
from cmp.config.recipe import DataSection


def load_data(data: DataSection, registry: Registry) -> ImageData:
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
    """A data set plugin must return uint8 (N, C, H, W) images with int64 labels in range."""
    if not isinstance(data, ImageData):
        raise DataError(f"returned {type(data).__name__}, not ImageData", where=where)
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


def take_subsets(data: ImageData, subset: int | None, test_subset: int | None, seed: int) -> ImageData:
    """Random subsets of the train and test splits, the same for a given seed."""
    def pick(images: torch.Tensor, labels: torch.Tensor, count: int | None, key: str, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        if count is None:
            return images, labels
        if count > images.shape[0]:
            raise DataError(f"asks for {count} images, but the split holds {images.shape[0]}", where=f"data.{key}")
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed + offset))[:count]
        order, _ = order.sort()
        return images[order], labels[order]

    train_x, train_y = pick(data.train_images, data.train_labels, subset, "subset", 0)
    test_x, test_y = pick(data.test_images, data.test_labels, test_subset, "test_subset", 1)
    return ImageData(data.name, train_x, train_y, test_x, test_y, data.classes, data.unlabeled_images)
