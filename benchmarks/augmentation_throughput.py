"""Augmentation throughput: cmp's batched SimCLR views against torchvision v2 per sample.

Both make two views of every image with the same operations and parameters (random
resized crop, flip, colour jitter with p 0.8, grayscale p 0.2, normalisation) from uint8
tensors; torchvision's pipeline is applied image by image, as a Dataset's __getitem__
does. Images per second are over the median of several timed repetitions.

    python -m benchmarks.augmentation_throughput
    python -m benchmarks.augmentation_throughput --ops --against b491898 --threads 1

`--ops` times each operation of one SimCLR view of 512 RGB 96x96 images instead: as
`--against REV`'s code ran it (its public functions on the whole batch), the current
public functions on the whole batch, and the current pipeline's own path (in place, in
CPU-sized chunks of the batch, here one chunk after another), so a kernel's gain and the
chunking's are told apart; then the whole two-view forward of each.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo
from cmp_plugins import augmentations, image_ops
from cmp_plugins.augmentations import ViewSpec, blur_kernel, chunk_size, sample_view_params, simclr

STL_LIKE = DataInfo("stl-like", 3, 96, 96, 10, (0.45, 0.44, 0.40), (0.26, 0.26, 0.27))


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


class TorchvisionViews(torch.utils.data.Dataset):
    """Two torchvision v2 views of each uint8 image, made in `__getitem__` (in DataLoader workers)."""

    def __init__(self, images: Tensor, info: DataInfo, crop_scale: tuple[float, float] = (0.2, 1.0)) -> None:
        self.images = images
        self.pipeline = torchvision_pipeline(info, crop_scale)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        return self.pipeline(image), self.pipeline(image)


def two_views_per_sample(pipeline: Callable[[Tensor], object], images: Tensor) -> None:
    """Two views of each image, one image at a time: how a per-sample pipeline is used."""
    for image in images:
        pipeline(image), pipeline(image)


def images_per_second(work: Callable[[], object], n_images: int, repeats: int) -> tuple[float, list[float]]:
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return n_images / statistics.median(times), times


def throughput(batch: int, repeats: int) -> None:
    for info in (
        DataInfo("fashion_mnist-like", 1, 28, 28, 10, (0.29,), (0.35,)),
        DataInfo("cifar-like", 3, 32, 32, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
        STL_LIKE,
    ):
        x = torch.randint(0, 256, (batch, info.channels, info.height, info.width), dtype=torch.uint8)
        ours = simclr(info, crop_scale=(0.2, 1.0), blur_prob=0.0)
        theirs = torchvision_pipeline(info, (0.2, 1.0))
        g = torch.Generator().manual_seed(0)
        fast, _ = images_per_second(functools.partial(ours, x, g), batch, repeats)
        slow, _ = images_per_second(functools.partial(two_views_per_sample, theirs, x), batch, max(2, repeats // 2))
        print(
            f"{info.name:<19} {info.channels}x{info.height}x{info.width}: cmp batched {fast:10,.0f} img/s | "
            f"torchvision v2 per sample {slow:8,.0f} img/s | ratio {fast / slow:6.1f}x  (goal >= 10x; 2 views per image)"
        )


Step = Callable[[Tensor, dict[str, Tensor]], Tensor]


def view_steps(ops: Any, spec: ViewSpec, size: int, mean: Tensor, std: Tensor, in_place: bool) -> list[tuple[str, Step]]:
    """The operations of one SimCLR view, in the pipeline's order; `in_place` takes the
    `op_` variants (the current pipeline's path), otherwise the public functions."""

    def op(name: str) -> Callable[..., Tensor]:
        return getattr(ops, name + "_" if in_place else name)

    kernel = blur_kernel(size)
    return [
        ("uint8 -> float", lambda t, p: t.float().div_(255)),
        ("resized crop + flip", lambda t, p: ops.resized_crop(t, p["box"], p["flip"], size)),
        ("brightness", lambda t, p: op("adjust_brightness")(t, p["brightness"])),
        ("contrast", lambda t, p: op("adjust_contrast")(t, p["contrast"])),
        ("saturation", lambda t, p: op("adjust_saturation")(t, p["saturation"])),
        ("hue", lambda t, p: op("adjust_hue")(t, p["hue"])),
        (f"grayscale (p {spec.grayscale_prob:g})", lambda t, p: op("to_grayscale_where")(t, p["grayscale"])),
        (f"Gaussian blur {kernel}x{kernel} (p {spec.blur_prob:g})", lambda t, p: ops.gaussian_blur(t, p["sigma"], kernel)),
        ("normalize", lambda t, p: op("normalize")(t, mean, std)),
    ]


def time_steps(steps: list[tuple[str, Step]], images: Tensor, params: dict[str, Tensor], chunk: int) -> list[float]:
    """Seconds each step takes over the batch, run in chunks of `chunk` images; each step
    gets (a fresh copy of) the previous step's output, so in-place steps see real inputs."""
    seconds = [0.0] * len(steps)
    for start in range(0, images.shape[0], chunk):
        part = {key: value[start : start + chunk] for key, value in params.items()}
        t = images[start : start + chunk]
        for i, (_, step) in enumerate(steps):
            fresh = t.clone()
            started = time.perf_counter()
            t = step(fresh, part)
            seconds[i] += time.perf_counter() - started
    return seconds


def module_at(revision: str) -> tuple[types.ModuleType, types.ModuleType]:
    """`plugins/image_ops.py` and `plugins/augmentations.py` as they were at a git revision."""

    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{revision}:{path}"], check=True, capture_output=True, text=True).stdout

    old_ops = types.ModuleType(f"image_ops_at_{revision}")
    exec(compile(source("plugins/image_ops.py"), f"{revision}:plugins/image_ops.py", "exec"), old_ops.__dict__)
    old_aug = types.ModuleType(f"augmentations_at_{revision}")
    sys.modules[old_aug.__name__] = old_aug  # dataclasses look their module up
    old_aug.__dict__["ops"] = old_ops
    text = source("plugins/augmentations.py").replace("from cmp_plugins import image_ops as ops", "")
    exec(compile(text, f"{revision}:plugins/augmentations.py", "exec"), old_aug.__dict__)
    return old_ops, old_aug


def per_op(against: str | None, batch: int, repeats: int) -> None:
    """Per-operation times of one SimCLR view at 96x96 RGB (see the module docstring)."""
    info = STL_LIKE
    x8 = torch.randint(0, 256, (batch, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pipeline = simclr(info, crop_scale=(0.2, 1.0))
    spec = pipeline.specs[0]
    params = sample_view_params(spec, batch, 96, 96, torch.Generator().manual_seed(1), x8.device)
    columns: dict[str, tuple[list[tuple[str, Step]], int]] = {}
    forwards: dict[str, Callable[[], Any]] = {}
    if against is not None:
        old_ops, old_aug = module_at(against)
        columns[f"at {against}: whole batch"] = (view_steps(old_ops, spec, 96, pipeline.mean, pipeline.std, False), batch)
        old_pipeline = old_aug.simclr(info, crop_scale=(0.2, 1.0))
        forwards[f"at {against}"] = lambda: old_pipeline(x8, torch.Generator().manual_seed(2))
    columns["now: whole batch"] = (view_steps(image_ops, spec, 96, pipeline.mean, pipeline.std, False), batch)
    chunk = chunk_size(x8)
    columns[f"now: pipeline's path (in place, chunks of {chunk})"] = (
        view_steps(image_ops, spec, 96, pipeline.mean, pipeline.std, True), chunk,
    )
    forwards["now"] = lambda: pipeline(x8, torch.Generator().manual_seed(2))
    rounds: dict[str, list[list[float]]] = {name: [] for name in columns}
    whole: dict[str, list[float]] = {name: [] for name in forwards}
    for steps, size in columns.values():  # warm-up
        time_steps(steps, x8, params, size)
    for _ in range(repeats):  # the columns alternate within each round
        for name, (steps, size) in columns.items():
            rounds[name].append(time_steps(steps, x8, params, size))
        for name, forward in forwards.items():
            started = time.perf_counter()
            forward()
            whole[name].append(time.perf_counter() - started)
    names = [step for step, _ in next(iter(columns.values()))[0]]
    medians = {name: [statistics.median(r[i] for r in runs) * 1000 for i in range(len(names))] for name, runs in rounds.items()}
    print(f"\nOne SimCLR view of {batch} RGB 96x96 images, ms (median of {repeats} rounds, columns alternating):\n")
    print("| operation | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for i, step in enumerate(names):
        print(f"| {step} | " + " | ".join(f"{medians[name][i]:.1f}" for name in columns) + " |")
    print("| **sum** | " + " | ".join(f"**{sum(medians[name]):.1f}**" for name in columns) + " |")
    print(f"\nTwo views (the augmentation's forward: parameters drawn too, and now its chunks spread over "
          f"{torch.get_num_threads()} worker thread(s)), ms: "
          + ", ".join(f"{name} {statistics.median(t) * 1000:.0f}" for name, t in whole.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--ops", action="store_true", help="time each operation of a view at 96x96 RGB instead")
    parser.add_argument("--against", metavar="REV", help="with --ops: also time the code at this git revision")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"chunk of a CPU batch: {augmentations.CPU_CHUNK_VALUES} values")
    if args.ops:
        per_op(args.against, args.batch, args.repeats)
    else:
        throughput(args.batch, args.repeats)


if __name__ == "__main__":
    main()
