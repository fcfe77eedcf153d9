"""Evaluation on frozen features: computed once per evaluation, shared by every evaluator.

The labelled images are either uint8 tensors on the device (`LabelledSplits`) or, for a
streamed data set, encoded images on disk (`StreamedSplits`): their evaluation input is
decoded batch by batch in worker processes and goes through `preprocess` and the encoder
as it arrives, so only the features are held.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Union

import torch
from torch import Tensor, nn

from cmp.api.contracts import Augmentation, Evaluator, Features
from cmp.distributed import SINGLE, Processes, broadcast, gather_rows, shard

if TYPE_CHECKING:
    from cmp.streaming import Batch, EncodedImages

Progress = Callable[[int, int], None]

VIEW_IMAGES = 2000
"""At most this many test images get two augmented views, for evaluators with `needs_views`."""
VIEW_SEED = 2020
"""Seeds the choice of those images and their augmentation draws: the same at every evaluation."""


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode for the block, its previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _encode(encoder: nn.Module, x: Tensor, channels_last: bool) -> Tensor:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return encoder(x).float()


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    preprocess: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    batch_size: int = 1024,
    progress: Progress | None = None,
    channels_last: bool = False,
) -> Features:
    """Encoder representations h of uint8 images, encoder in eval mode (restored after).

    Always float32; `channels_last` (as in training) only changes the memory layout.
    """
    chunks = []
    total = images.shape[0]
    with eval_mode(encoder):
        for start in range(0, total, batch_size):
            chunks.append(_encode(encoder, preprocess(images[start : start + batch_size]), channels_last))
            if progress is not None:
                progress(min(total, start + batch_size), total)
    return Features(torch.cat(chunks), labels, num_classes)


def view_subset(total: int, limit: int = VIEW_IMAGES, seed: int = VIEW_SEED) -> Tensor:
    """Sorted indices (min(total, limit),) of a seeded random subset of `total` images (CPU)."""
    if total <= limit:
        return torch.arange(total)
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:limit]
    return chosen.sort().values


@torch.no_grad()
def extract_view_features(
    encoder: nn.Module,
    augmentation: Augmentation,
    images: Tensor,
    rows: slice | None = None,
    batch_size: int = 1024,
    channels_last: bool = False,
    seed: int = VIEW_SEED,
) -> tuple[Tensor, Tensor]:
    """Encoder features (R, F) of the first two augmented views of uint8 `images[rows]`.

    The augmentation draws from one generator on the images' device seeded with `seed`,
    batch by batch over all of `images`, so a row's views do not depend on `rows`: each
    process of a distributed evaluation augments every image and encodes only its share,
    and the gathered shares equal one process's features. Encoder in eval mode, float32.
    """
    total = images.shape[0]
    rows = rows if rows is not None else slice(0, total)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    first: list[Tensor] = []
    second: list[Tensor] = []
    with eval_mode(encoder):
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            views = augmentation(images[start:stop], generator)
            if len(views) < 2:
                raise ValueError(f"the augmentation made {len(views)} view(s); positive pairs need 2")
            lo, hi = max(start, rows.start) - start, min(stop, rows.stop) - start
            if hi > lo or (not first and stop == total):  # an empty share still gives (0, F)
                first.append(_encode(encoder, views[0][lo:max(lo, hi)], channels_last))
                second.append(_encode(encoder, views[1][lo:max(lo, hi)], channels_last))
    return torch.cat(first), torch.cat(second)


def needs_views(evaluators: Mapping[str, Evaluator]) -> bool:
    """Whether some evaluator asked for views (an attribute `needs_views = True`)."""
    return any(getattr(evaluator, "needs_views", False) for evaluator in evaluators.values())


def run_evaluators(
    evaluators: Mapping[str, Evaluator], train: Features, test: Features,
    progress: Callable[[str], Progress] | None = None,
) -> dict[str, float]:
    """Every evaluator on the same features: {"knn_top1": ..., "linear_top1": ...}.

    An evaluator with a `progress` attribute is handed a callback reporting as task
    `eval/<name>` (the linear probe's iterations, kNN's blocks of test rows).
    """
    results: dict[str, float] = {}
    for name, evaluator in evaluators.items():
        if progress is not None and hasattr(evaluator, "progress"):
            evaluator.progress = progress(f"eval/{name}")  # type: ignore[attr-defined]
        for metric, value in evaluator(train, test).items():
            results[f"{name}_{metric}"] = float(value)
    return results


@dataclass(frozen=True)
class LabelledSplits:
    """The labelled images evaluation uses, on the device: uint8 images, int64 labels."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int


EVAL_BATCH = 256
"""Images decoded per batch when a streamed split is evaluated."""


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

    def stream(self, images: EncodedImages, rows: slice | None = None) -> Iterator[Batch]:
        """The evaluation input of `images[rows]` in order, in batches on the CPU."""
        from cmp.streaming import stream_eval

        return stream_eval(
            images, size=self.size, batch_size=self.batch_size, channels=self.channels, fraction=self.fraction,
            rows=rows, num_workers=self.num_workers, pin_memory=self.device.type == "cuda", max_corrupt=self.max_corrupt,
            decode_device=self.device if self.decode_on == "device" else None,
        )

    @functools.cached_property
    def view_images(self) -> Tensor:
        """The `view_subset` of the test images, decoded once (evaluation crop), uint8 on the device:
        what the diagnostics' two augmented views are made from."""
        from cmp.streaming import Subset

        rows = view_subset(len(self.test)).numpy()
        decoded = [batch.images for batch in self.stream(Subset(self.test, rows))]
        return torch.cat(decoded).to(self.device)


Splits = Union[LabelledSplits, StreamedSplits]
"""The labelled images an evaluation reads: in memory, or streamed from disk."""


def split_sizes(splits: Splits) -> tuple[int, int]:
    """(training images, test images) of either kind of splits."""
    if isinstance(splits, StreamedSplits):
        return len(splits.train), len(splits.test)
    return splits.train_images.shape[0], splits.test_images.shape[0]


@torch.no_grad()
def extract_streamed_features(
    encoder: nn.Module,
    preprocess: Callable[[Tensor], Tensor],
    splits: StreamedSplits,
    images: EncodedImages,
    rows: slice,
    progress: Progress | None = None,
    channels_last: bool = False,
) -> Tensor:
    """Encoder representations (R, F) float32 of `images[rows]`, decoded batch by batch;
    encoder in eval mode (restored after). Only the features are kept."""
    start, stop, _ = rows.indices(len(images))
    total = max(0, stop - start)
    chunks: list[Tensor] = []
    done = 0
    cuda = splits.device.type == "cuda"
    with eval_mode(encoder):
        for batch in splits.stream(images, rows):
            x = batch.images.to(splits.device, non_blocking=cuda)
            chunks.append(_encode(encoder, preprocess(x), channels_last))
            done += x.shape[0]
            if progress is not None:
                progress(done, total)
        if not chunks:  # an empty share: (0, F)
            empty = torch.zeros((0, splits.channels, splits.size, splits.size), dtype=torch.uint8, device=splits.device)
            chunks.append(_encode(encoder, preprocess(empty), channels_last))
    return torch.cat(chunks)


def evaluate_representation(
    encoder: nn.Module,
    preprocess: Callable[[Tensor], Tensor],
    splits: Splits,
    evaluators: Mapping[str, Evaluator],
    progress: Callable[[str], Progress] | None = None,
    channels_last: bool = False,
    processes: Processes = SINGLE,
    augmentation: Augmentation | None = None,
) -> dict[str, float]:
    """Features of both splits once, then every evaluator on them.

    With several processes each extracts the features of its share of the images and
    they are gathered, so evaluation is not N times slower; the main process runs the
    evaluators and every process gets its metrics. Given the `augmentation`, and only
    when an evaluator has `needs_views = True`, the test `Features` also carry `views`:
    features of two augmented views of `view_subset` of the test images, drawn from a
    generator seeded with `VIEW_SEED`, so every evaluation sees the same pairs.

    Streamed splits are decoded batch by batch (each process its share); their view
    images are decoded once, with the evaluation crop, and kept for later evaluations.
    """
    def features(split: str, task: str) -> Features:
        report = progress(task) if progress is not None else None
        labels = getattr(splits, f"{split}_labels")
        if isinstance(splits, StreamedSplits):
            encoded = getattr(splits, split)
            x = extract_streamed_features(encoder, preprocess, splits, encoded, shard(len(encoded), processes),
                                          report, channels_last)
        else:
            images = getattr(splits, f"{split}_images")
            mine = shard(images.shape[0], processes)
            x = extract_features(encoder, preprocess, images[mine], labels[mine], splits.num_classes,
                                 progress=report, channels_last=channels_last).x
        return Features(gather_rows(x, processes), labels, splits.num_classes)

    train = features("train", "features/train")
    test = features("test", "features/test")
    if augmentation is not None and needs_views(evaluators):
        if isinstance(splits, StreamedSplits):
            images = splits.view_images
        else:
            images = splits.test_images[view_subset(splits.test_images.shape[0]).to(splits.test_images.device)]
        first, second = extract_view_features(encoder, augmentation, images, shard(images.shape[0], processes),
                                              channels_last=channels_last)
        test = replace(test, views=(gather_rows(first, processes), gather_rows(second, processes)))
    results = run_evaluators(evaluators, train, test, progress) if processes.is_main else None
    return broadcast(results, processes)
