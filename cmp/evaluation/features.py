"""Evaluation on frozen features: computed once per evaluation, shared by every evaluator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cmp.api.contracts import Evaluator, Features
from cmp.distributed import SINGLE, Processes, broadcast, gather_rows, shard

Progress = Callable[[int, int], None]


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
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = []
        total = images.shape[0]
        for start in range(0, total, batch_size):
            x = preprocess(images[start : start + batch_size])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            chunks.append(encoder(x).float())
            if progress is not None:
                progress(min(total, start + batch_size), total)
    finally:
        encoder.train(was_training)
    return Features(torch.cat(chunks), labels, num_classes)


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


def evaluate_representation(
    encoder: nn.Module,
    preprocess: Callable[[Tensor], Tensor],
    splits: LabelledSplits,
    evaluators: Mapping[str, Evaluator],
    progress: Callable[[str], Progress] | None = None,
    channels_last: bool = False,
    processes: Processes = SINGLE,
) -> dict[str, float]:
    """Features of both splits once, then every evaluator on them.

    With several processes each extracts the features of its share of the images and
    they are gathered, so evaluation is not N times slower; the main process runs the
    evaluators and every process gets its metrics.
    """
    def features(images: Tensor, labels: Tensor, task: str) -> Features:
        mine = shard(images.shape[0], processes)
        x = extract_features(encoder, preprocess, images[mine], labels[mine], splits.num_classes,
                             progress=progress(task) if progress is not None else None,
                             channels_last=channels_last).x
        return Features(gather_rows(x, processes), labels, splits.num_classes)

    train = features(splits.train_images, splits.train_labels, "features/train")
    test = features(splits.test_images, splits.test_labels, "features/test")
    results = run_evaluators(evaluators, train, test, progress) if processes.is_main else None
    return broadcast(results, processes)
