"""Streaming throughput: cmp's streaming path against torchvision's per-sample pipeline.

Both read the same JPEGs (200-500 px, generated in a temporary folder as
`train/<class>/*.jpg`, or an existing tree given with `--root`) with the same number of
DataLoader workers, and both deliver two normalised 96 px SimCLR views of each image to
the main process:

- cmp: `cmp.streaming.StreamingSource` decodes each image in a worker and takes the
  random resized crop from the full-resolution image (scale 0.08-1) into a uint8 batch;
  the main process then makes the two views with the batched `simclr` augmentation
  (its own crop the identity, flip, colour jitter p 0.8, grayscale p 0.2, no blur).
- torchvision: `ImageFolder` + `transforms.v2` per sample in the workers
  (RandomResizedCrop(96), flip, ColorJitter p 0.8, RandomGrayscale p 0.2, to float,
  normalise), applied twice to each decoded image; the main process only collates.

Each path runs one epoch to start its workers, then one timed epoch; images/s is over the
timed one. On a CPU-only machine the augmentation shares the cores with the workers.
With `--device cuda` cmp's views are made on the GPU, and a third row decodes the JPEGs
there too (`decode_on: device`: nvJPEG in batches, the workers only read bytes and choose
crops).

    python -m benchmarks.streaming_throughput --images 1000 --workers 2
    python -m benchmarks.streaming_throughput --images 5000 --workers 8 --device cuda
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo
from cmp.streaming import CropSpec, StreamingSource, build_index
from cmp_plugins.augmentations import simclr

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = 10


def write_images(root: Path, count: int, seed: int = 0) -> None:
    """`count` RGB JPEGs with sides in 200-500 px (gradients and noise, quality 90) in root/train/<class>/."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        width, height = (int(v) for v in rng.integers(200, 501, 2))
        x = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0, 255, 3)
        y = np.linspace(0, 1, height)[:, None, None] * rng.uniform(0, 255, 3)
        pixels = ((x + y) / 2 + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
        folder = root / "train" / f"class_{k % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{k:06d}.jpg", "JPEG", quality=90)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cmp_streaming(root: Path, workers: int, batch: int, size: int, device: torch.device | None = None,
                  decode_on_device: bool = False) -> tuple[float, float, str]:
    """(seconds of the timed epoch, images in it, detail) for cmp's path: views made on
    `device`, JPEGs decoded in the workers or (`decode_on_device`) on `device`."""
    device = device if device is not None else torch.device("cpu")
    index = build_index(root, "train", use_cache=False)
    info = DataInfo("bench", 3, size, size, len(index.classes), MEAN, STD)
    augment = simclr(info, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), blur_prob=0.0).to(device)
    generator = torch.Generator(device).manual_seed(0)
    order = torch.Generator().manual_seed(1)
    seconds, augmenting = 0.0, 0.0
    with StreamingSource(index, batch_size=batch, size=size, crop=CropSpec(), num_workers=workers,
                         pin_memory=device.type == "cuda", decode_device=device if decode_on_device else None) as source:
        for epoch in range(2):
            synchronize(device)
            started = time.perf_counter()
            augmenting = 0.0
            for images in source.epoch(epoch, torch.randperm(len(index), generator=order)):
                begun = time.perf_counter()
                first, second = augment(images.images.to(device, non_blocking=True), generator)
                augmenting += time.perf_counter() - begun
            synchronize(device)
            seconds = time.perf_counter() - started
        steps = source.steps_per_epoch
    where = "on the GPU" if device.type == "cuda" else "in the main process"
    return seconds, steps * batch, f"of which the batched augmentation {where} {augmenting:.2f} s (launch time on a GPU)"


class TwoViews:
    """Two independent draws of a per-sample pipeline on one decoded image."""

    def __init__(self, pipeline: v2.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pipeline(image), self.pipeline(image)


def torchvision_per_sample(root: Path, workers: int, batch: int, size: int) -> tuple[float, float, str]:
    """(seconds of the timed epoch, images in it, detail) for torchvision's path."""
    pipeline = v2.Compose([
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(MEAN), list(STD)),
    ])
    folder = datasets.ImageFolder(str(root / "train"), transform=TwoViews(pipeline))
    loader = DataLoader(
        folder, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(1),
    )
    seconds = 0.0
    for _ in range(2):
        started = time.perf_counter()
        for _views, _labels in loader:
            pass
        seconds = time.perf_counter() - started
    return seconds, len(loader) * batch, "PIL decode + transforms.v2 per sample, in the workers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="JPEGs to generate (default 5000)")
    parser.add_argument("--root", type=Path, help="an existing tree with train/<class>/ instead of generated images")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of both paths")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--device", default="cpu", help="where cmp makes the views (cpu, cuda); with cuda also a row decoding there")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="cmp-streaming-") as temporary:
        root = args.root
        if root is None:
            root = Path(temporary)
            started = time.perf_counter()
            write_images(root, args.images)
            print(f"generated {args.images} JPEGs (200-500 px) in {time.perf_counter() - started:.1f} s")
        print(describe_machine())
        print(f"CPUs: {os.cpu_count()}; workers: {args.workers}; batch {args.batch}; views 2 x {args.size} px")
        rows = [
            ("cmp streaming (decode + full-res crop in workers, batched simclr views)",
             *cmp_streaming(root, args.workers, args.batch, args.size, device)),
            ("torchvision ImageFolder + transforms.v2 per sample (two views)", *torchvision_per_sample(root, args.workers, args.batch, args.size)),
        ]
        if device.type == "cuda":
            rows.append(("cmp streaming, JPEGs decoded on the GPU (decode_on: device)",
                         *cmp_streaming(root, args.workers, args.batch, args.size, device, decode_on_device=True)))
    print("\n| path | images/s | timed epoch | detail |\n|---|---:|---:|---|")
    rates = []
    for name, seconds, images, detail in rows:
        rates.append(images / seconds)
        print(f"| {name} | {images / seconds:,.0f} | {images} images in {seconds:.2f} s | {detail} |")
    print(f"| ratio cmp / torchvision | {rates[0] / rates[1]:.2f}x | | |")
    if len(rates) > 2:
        print(f"| ratio decoded on the GPU / in the workers | {rates[2] / rates[0]:.2f}x | | |")


if __name__ == "__main__":
    main()
