"""Augmentation throughput: cmp's batched SimCLR views against torchvision v2 per sample.

Both make two views of every image with the same operations and parameters (random
resized crop, flip, colour jitter with p 0.8, grayscale p 0.2, normalisation) from uint8
tensors; torchvision's pipeline is applied image by image, as a Dataset's __getitem__
does. Images per second are over the median of several timed repetitions.

    python -m benchmarks.augmentation_throughput
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.transforms import v2

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo
from cmp_plugins.augmentations import simclr


def torchvision_pipeline(info: DataInfo, crop_scale: tuple[float, float]) -> v2.Compose:
    ops: list[torch.nn.Module] = [
        v2.RandomResizedCrop(info.height, scale=crop_scale, antialias=False),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8 if info.channels == 3 else 0, 0.2 if info.channels == 3 else 0)], p=0.8),
    ]
    if info.channels == 3:
        ops.append(v2.RandomGrayscale(p=0.2))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(info.mean), list(info.std))]
    return v2.Compose(ops)


def images_per_second(work: Callable[[], None], n_images: int, repeats: int) -> tuple[float, list[float]]:
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return n_images / statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(describe_machine())
    for info in (
        DataInfo("fashion_mnist-like", 1, 28, 28, 10, (0.29,), (0.35,)),
        DataInfo("cifar-like", 3, 32, 32, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
        DataInfo("stl-like", 3, 96, 96, 10, (0.45, 0.44, 0.40), (0.26, 0.26, 0.27)),
    ):
        x = torch.randint(0, 256, (args.batch, info.channels, info.height, info.width), dtype=torch.uint8)
        ours = simclr(info, crop_scale=(0.2, 1.0), blur_prob=0.0)
        theirs = torchvision_pipeline(info, (0.2, 1.0))
        g = torch.Generator().manual_seed(0)

        def batched() -> None:
            ours(x, g)

        def per_sample() -> None:
            for image in x:
                theirs(image), theirs(image)

        fast, _ = images_per_second(batched, args.batch, args.repeats)
        slow, _ = images_per_second(per_sample, args.batch, max(2, args.repeats // 2))
        print(
            f"{info.name:<19} {info.channels}x{info.height}x{info.width}: cmp batched {fast:10,.0f} img/s | "
            f"torchvision v2 per sample {slow:8,.0f} img/s | ratio {fast / slow:6.1f}x  (goal >= 10x; 2 views per image)"
        )


if __name__ == "__main__":
    main()
