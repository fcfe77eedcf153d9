"""The labelled images an evaluation reads: one protocol, in memory or streamed from disk.

`LabelledSplits` holds uint8 tensors on the device; `StreamedSplits` the encoded images
of a streamed data set, whose evaluation input is decoded batch by batch at every
evaluation, so only features are ever held. Both give their sizes, a subset of given
rows, each split's evaluation input in batches, the test images the diagnostics' views
are made from, and the labelled training images a baseline trains on; evaluation
(`cmp.evaluation.features`) and the engine use them through `Splits` alone.

`seeded_rows` is cmp's one seeded random subset: the recipe's data subsets, the fixed
subset evaluated during training and the view images all take their rows from it, so a
streamed data set gets exactly the rows a tensor data set of the same size gets.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:  # cmp.streaming imports torchvision's decoders: only where a streamed set is used
    from cmp.streaming import Batch, EncodedImages

Split = Literal["train", "test"]

VIEW_IMAGES = 2000
"""At most this many test images get two augmented views, for evaluators with `needs_views`."""
VIEW_SEED = 2020
"""Seeds the choice of those images and their augmentation draws: the same at every evaluation."""

EXTRACT_BATCH = 1024
"""Images per batch of an in-memory split's evaluation input."""
EVAL_BATCH = 256
"""Images decoded per batch when a streamed split is evaluated."""


def seeded_rows(total: int, count: int | None, seed: int) -> Tensor | None:
    """Sorted indices (CPU int64) of a seeded random choice of `count` of `total` rows;
    None when `count` is None or covers every row (nothing to choose)."""
    if count is None or count >= total:
        return None
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]
    return chosen.sort().values


def view_subset(total: int, limit: int = VIEW_IMAGES, seed: int = VIEW_SEED) -> Tensor:
    """Sorted indices (min(total, limit),) of a seeded random subset of `total` images (CPU)."""
    rows = seeded_rows(total, limit, seed)
    return torch.arange(total) if rows is None else rows


class Splits(Protocol):
    """The labelled train and test images an evaluation reads, however they are stored."""

    @property
    def num_classes(self) -> int: ...

    @property
    def train_labels(self) -> Tensor:
        """int64 (N,) on the evaluation device."""
        ...

    @property
    def test_labels(self) -> Tensor: ...

    @property
    def training_images(self) -> Tensor | EncodedImages:
        """The labelled training images, as a baseline trains on them (uint8 on the device, or encoded)."""
        ...

    @property
    def view_images(self) -> Tensor:
        """uint8 images on the device of `view_subset` of the test split, in evaluation form."""
        ...

    def sizes(self) -> tuple[int, int]:
        """(training images, test images)."""
        ...

    def subset(self, train: Tensor | None, test: Tensor | None) -> Splits:
        """Only the given rows of each split (CPU int64 indices; None: all of it)."""
        ...

    def inputs(self, split: Split, rows: slice) -> Iterator[Tensor]:
        """The evaluation input of `split`'s images `rows`, in order: uint8 batches on the
        device, at least one (empty when `rows` is), for `preprocess` and the encoder."""
        ...


@dataclass(frozen=True)
class LabelledSplits:
    """The labelled images evaluation uses, on the device: uint8 images, int64 labels."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int

    @property
    def training_images(self) -> Tensor:
        return self.train_images

    @property
    def view_images(self) -> Tensor:
        return self.test_images[view_subset(self.test_images.shape[0]).to(self.test_images.device)]

    def sizes(self) -> tuple[int, int]:
        return self.train_images.shape[0], self.test_images.shape[0]

    def subset(self, train: Tensor | None, test: Tensor | None) -> LabelledSplits:
        device = self.train_images.device
        rows_train = slice(None) if train is None else train.to(device)
        rows_test = slice(None) if test is None else test.to(device)
        return LabelledSplits(self.train_images[rows_train], self.train_labels[rows_train],
                              self.test_images[rows_test], self.test_labels[rows_test], self.num_classes)

    def inputs(self, split: Split, rows: slice) -> Iterator[Tensor]:
        images = (self.train_images if split == "train" else self.test_images)[rows]
        for start in range(0, max(1, images.shape[0]), EXTRACT_BATCH):
            yield images[start : start + EXTRACT_BATCH]


@dataclass
class StreamedSplits:
    """The labelled splits of a streamed data set, read from disk at each evaluation.

    The evaluation input of an image is its central square of `fraction` x its shorter
    side resized to `size` (`cmp.streaming.eval_crop`), decoded in `num_workers` worker
    processes, `batch_size` at a time (with `decode_on` "device", JPEGs decoded on
    `device` instead, as `cmp.streaming.stream_eval` says). Labels live on `device`.
    """

    train: EncodedImages
    test: EncodedImages
    num_classes: int
    channels: int
    size: int
    device: torch.device
    fraction: float = 0.875
    batch_size: int = EVAL_BATCH
    num_workers: int = 2
    max_corrupt: float = 0.01
    decode_on: str = "workers"

    @functools.cached_property
    def train_labels(self) -> Tensor:
        return torch.from_numpy(self.train.labels).to(self.device)

    @functools.cached_property
    def test_labels(self) -> Tensor:
        return torch.from_numpy(self.test.labels).to(self.device)

    @property
    def training_images(self) -> EncodedImages:
        return self.train

    @functools.cached_property
    def view_images(self) -> Tensor:
        """Decoded once (evaluation crop) and kept on the device for later evaluations."""
        from cmp.streaming import Subset

        rows = view_subset(len(self.test)).numpy()
        decoded = [batch.images for batch in self.stream(Subset(self.test, rows))]
        return torch.cat(decoded).to(self.device)

    def sizes(self) -> tuple[int, int]:
        return len(self.train), len(self.test)

    def subset(self, train: Tensor | None, test: Tensor | None) -> StreamedSplits:
        from cmp.streaming import Subset

        return dataclasses.replace(
            self,
            train=self.train if train is None else Subset(self.train, train.numpy()),
            test=self.test if test is None else Subset(self.test, test.numpy()),
        )

    def inputs(self, split: Split, rows: slice) -> Iterator[Tensor]:
        cuda = self.device.type == "cuda"
        empty = True
        for batch in self.stream(self.train if split == "train" else self.test, rows):
            empty = False
            yield batch.images.to(self.device, non_blocking=cuda)
        if empty:
            yield torch.zeros((0, self.channels, self.size, self.size), dtype=torch.uint8, device=self.device)

    def stream(self, images: EncodedImages, rows: slice | None = None) -> Iterator[Batch]:
        """The evaluation input of `images[rows]` in order, in batches on the CPU."""
        from cmp.streaming import stream_eval

        return stream_eval(
            images, size=self.size, batch_size=self.batch_size, channels=self.channels, fraction=self.fraction,
            rows=rows, num_workers=self.num_workers, pin_memory=self.device.type == "cuda", max_corrupt=self.max_corrupt,
            decode_device=self.device if self.decode_on == "device" else None,
        )
