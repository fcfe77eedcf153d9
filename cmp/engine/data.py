"""The data sets the engine trains and evaluates on: one protocol, in memory or streamed.

A data set plugin returns `ImageData` (uint8 tensors in memory) or `StreamedData`
(encoded images read from disk as training goes). `dataset(data)` is the one place that
tells them apart: it gives a `DataSet`, `InMemory` or `Streamed`, and the engine asks
that for the checks, the sizes, the recipe's seeded subsets, the training input and
the evaluation splits, never which kind it holds. Subsets of both kinds take the same
rows (`cmp.evaluation.splits.seeded_rows`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from cmp.api.contracts import DataInfo, EncodedImages, ImageData, StreamedData
from cmp.api.registry import Registry
from cmp.config.recipe import DataSection
from cmp.distributed import SINGLE, Processes
from cmp.engine.trainer import BatchSource
from cmp.errors import CmpError, DataError
from cmp.evaluation.splits import LabelledSplits, Splits, StreamedSplits, seeded_rows

Data = ImageData | StreamedData
"""What a data set plugin returns."""

TrainingInput = Tensor | BatchSource
"""What the trainer draws batches from: images on the device, or a source of decoded batches."""


class DataSet(Protocol):
    """What the engine does with a data set, whichever way its images are stored."""

    @property
    def streamed(self) -> bool:
        """Whether its images are read from disk as they are needed."""
        ...

    def info(self) -> DataInfo: ...

    def check(self, where: str) -> None:
        """A `DataError` at `where` for images or labels the engine cannot use."""
        ...

    def train_count(self) -> int:
        """The images a training epoch draws from (unlabelled ones included)."""
        ...

    def subsets(self, subset: int | None, test_subset: int | None, seed: int) -> Data:
        """Seeded subsets of `subset` training and `test_subset` test images (None: all)."""
        ...

    def training_input(self, batch_size: int, seed: int, device: torch.device,
                       processes: Processes = SINGLE) -> TrainingInput:
        """What a cell trains on: every training image, with this process's share of each batch."""
        ...

    def source(self, images: Tensor | EncodedImages, batch_size: int, seed: int, device: torch.device,
               processes: Processes = SINGLE) -> TrainingInput:
        """The training input of `images` (this data set's, or a split of it), as the trainer takes it."""
        ...

    def evaluation_splits(self, device: torch.device) -> Splits: ...

    def sample_input(self, device: torch.device) -> Tensor:
        """One uint8 image (1, C, H, W) of the evaluation input's size, on `device`."""
        ...


def dataset(data: object, where: str = "the dataset") -> DataSet:
    """The engine's view of what a data set plugin returned; a `DataError` at `where` for anything else."""
    if isinstance(data, ImageData):
        return InMemory(data)
    if isinstance(data, StreamedData):
        return Streamed(data)
    raise DataError(f"returned {type(data).__name__}, not ImageData or StreamedData", where=where)


def subset_rows(total: int, count: int | None, seed: int, key: str) -> Tensor | None:
    """Sorted indices of a seeded random subset of `count` of `total` images (None: all);
    `key` names the recipe key that asked for more than there are."""
    if count is not None and count > total:
        raise DataError(f"asks for {count} images, but the split holds {total}", where=f"data.{key}")
    return seeded_rows(total, count, seed)


@dataclass(frozen=True)
class InMemory:
    """A data set held as uint8 tensors (`ImageData`)."""

    data: ImageData

    @property
    def streamed(self) -> bool:
        return False

    def info(self) -> DataInfo:
        return self.data.info()

    def check(self, where: str) -> None:
        data = self.data
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

    def train_count(self) -> int:
        unlabeled = 0 if self.data.unlabeled_images is None else self.data.unlabeled_images.shape[0]
        return int(self.data.train_images.shape[0] + unlabeled)

    def subsets(self, subset: int | None, test_subset: int | None, seed: int) -> ImageData:
        data = self.data

        def pick(images: Tensor, labels: Tensor, count: int | None, key: str, offset: int) -> tuple[Tensor, Tensor]:
            rows = subset_rows(images.shape[0], count, seed + offset, key)
            return (images, labels) if rows is None else (images[rows], labels[rows])

        train_x, train_y = pick(data.train_images, data.train_labels, subset, "subset", 0)
        test_x, test_y = pick(data.test_images, data.test_labels, test_subset, "test_subset", 1)
        return ImageData(data.name, train_x, train_y, test_x, test_y, data.classes, data.unlabeled_images)

    def training_input(self, batch_size: int, seed: int, device: torch.device,
                       processes: Processes = SINGLE) -> TrainingInput:
        data = self.data
        images = data.train_images if data.unlabeled_images is None else torch.cat([data.train_images, data.unlabeled_images])
        return images.to(device)

    def source(self, images: Tensor | EncodedImages, batch_size: int, seed: int, device: torch.device,
               processes: Processes = SINGLE) -> TrainingInput:
        if not isinstance(images, Tensor):
            raise TypeError("an in-memory data set trains on uint8 tensors")
        return images.to(device)

    def evaluation_splits(self, device: torch.device) -> LabelledSplits:
        data = self.data
        return LabelledSplits(
            data.train_images.to(device), data.train_labels.to(device),
            data.test_images.to(device), data.test_labels.to(device), len(data.classes),
        )

    def sample_input(self, device: torch.device) -> Tensor:
        return self.data.test_images[:1].to(device)


@dataclass(frozen=True)
class Streamed:
    """A data set that stays encoded on disk (`StreamedData`): checked for its classes and
    labels, trained through a `cmp.streaming.StreamingSource` (decoded and cropped in
    worker processes, each image's crop seeded by (seed, epoch, image)) and evaluated
    through `StreamedSplits` (decoded batch by batch)."""

    data: StreamedData

    @property
    def streamed(self) -> bool:
        return True

    def info(self) -> DataInfo:
        return self.data.info()

    def check(self, where: str) -> None:
        data = self.data
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

    def train_count(self) -> int:
        return len(self.data.train)

    def subsets(self, subset: int | None, test_subset: int | None, seed: int) -> StreamedData:
        from cmp.streaming import Subset

        data = self.data
        train_rows = subset_rows(len(data.train), subset, seed, "subset")
        test_rows = subset_rows(len(data.test), test_subset, seed + 1, "test_subset")
        return dataclasses.replace(
            data,
            train=data.train if train_rows is None else Subset(data.train, train_rows.numpy()),
            test=data.test if test_rows is None else Subset(data.test, test_rows.numpy()),
        )

    def training_input(self, batch_size: int, seed: int, device: torch.device,
                       processes: Processes = SINGLE) -> TrainingInput:
        return self.source(self.data.train, batch_size, seed, device, processes)

    def source(self, images: Tensor | EncodedImages, batch_size: int, seed: int, device: torch.device,
               processes: Processes = SINGLE) -> TrainingInput:
        """A `StreamingSource` of encoded `images` with the data set's crop, workers and
        corrupt-image limit (uint8 tensors, already decoded, are trained on as they are)."""
        if isinstance(images, Tensor):
            return images.to(device)
        from cmp.streaming import CropSpec, StreamingSource

        data = self.data
        source: BatchSource = StreamingSource(  # type: ignore[assignment]  # its Batch is a NamedTuple: read-only fields
            images, batch_size=batch_size, size=data.size, channels=data.channels,
            crop=CropSpec(data.crop_scale, data.crop_ratio), seed=seed, rank=processes.rank,
            world_size=processes.world_size, num_workers=data.num_workers, pin_memory=device.type == "cuda",
            max_corrupt=data.max_corrupt, decode_device=device if data.decode_on == "device" else None,
        )
        return source

    def evaluation_splits(self, device: torch.device) -> StreamedSplits:
        data = self.data
        return StreamedSplits(
            data.train, data.test, len(data.classes), data.channels, data.size, device, fraction=data.eval_fraction,
            num_workers=data.num_workers, max_corrupt=data.max_corrupt, decode_on=data.decode_on,
        )

    def sample_input(self, device: torch.device) -> Tensor:
        size = self.data.size
        return torch.zeros((1, self.data.channels, size, size), dtype=torch.uint8, device=device)


def load_data(data: DataSection, registry: Registry) -> Data:
    """The data set a cell's `data` section names, checked, with its subsets taken (on the CPU)."""
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
    where = f"dataset '{component.name}' from {component.provider}"
    checked = dataset(loaded, where)
    checked.check(where)
    return checked.subsets(data.subset, data.test_subset, data.split_seed)


def check_image_data(data: object, where: str) -> None:
    """A data set plugin must return uint8 (N, C, H, W) images with int64 labels in range,
    or a streamed set whose labels are in range (its images are read as training goes)."""
    dataset(data, where).check(where)


def train_count(data: Data) -> int:
    """The images a training epoch of a plugin's data set draws from."""
    return dataset(data).train_count()


def take_subsets(data: Data, subset: int | None, test_subset: int | None, seed: int) -> Data:
    """Random subsets of a plugin's train and test splits, the same for a given seed."""
    return dataset(data).subsets(subset, test_subset, seed)
