"""Evaluation on frozen features: computed once per evaluation, shared by every evaluator.

The labelled images come as `Splits` (`cmp.evaluation.splits`): uint8 tensors on the
device, or a streamed data set's encoded images decoded batch by batch. Either way their
evaluation input goes through `preprocess` and the encoder as it arrives, so only the
features are held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cmp.api.contracts import Augmentation, Evaluator, Features
from cmp.api.results import EMBEDDING_FILE
from cmp.distributed import SINGLE, Processes, broadcast, gather_rows, shard
from cmp.evaluation.splits import VIEW_SEED, Split, Splits

Progress = Callable[[int, int], None]


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
def encode_batches(
    encoder: nn.Module,
    preprocess: Callable[[Tensor], Tensor],
    batches: Iterable[Tensor],
    total: int,
    progress: Progress | None = None,
    channels_last: bool = False,
) -> Tensor:
    """Encoder representations h (N, F) of uint8 image batches, encoder in eval mode
    (restored after); `progress(done, total)` after each non-empty batch.

    Always float32; `channels_last` (as in training) only changes the memory layout.
    """
    chunks = []
    done = 0
    with eval_mode(encoder):
        for images in batches:
            chunks.append(_encode(encoder, preprocess(images), channels_last))
            done += images.shape[0]
            if progress is not None and images.shape[0]:
                progress(done, total)
    return torch.cat(chunks)


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


def save_embedding_sample(evaluators: Mapping[str, Evaluator], run_dir: Path) -> Path | None:
    """Write the sample an evaluator kept (an attribute `sample = (features, labels)`, as
    `embedding_map` keeps) to `run_dir/features.npz`, compressed; None when none kept one."""
    for evaluator in evaluators.values():
        sample = getattr(evaluator, "sample", None)
        if sample is not None:
            path = run_dir / EMBEDDING_FILE
            np.savez_compressed(path, features=np.asarray(sample[0], dtype=np.float32), labels=np.asarray(sample[1]))
            return path
    return None


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
            evaluator.progress = progress(f"eval/{name}")
        for metric, value in evaluator(train, test).items():
            results[f"{name}_{metric}"] = float(value)
    return results


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
    def features(split: Split, task: str) -> Features:
        report = progress(task) if progress is not None else None
        mine = shard(splits.sizes()[0 if split == "train" else 1], processes)
        x = encode_batches(encoder, preprocess, splits.inputs(split, mine), mine.stop - mine.start, report, channels_last)
        labels = splits.train_labels if split == "train" else splits.test_labels
        return Features(gather_rows(x, processes), labels, splits.num_classes)

    train = features("train", "features/train")
    test = features("test", "features/test")
    if augmentation is not None and needs_views(evaluators):
        images = splits.view_images
        first, second = extract_view_features(encoder, augmentation, images, shard(images.shape[0], processes),
                                              channels_last=channels_last)
        test = replace(test, views=(gather_rows(first, processes), gather_rows(second, processes)))
    results = run_evaluators(evaluators, train, test, progress) if processes.is_main else None
    return broadcast(results, processes)
