"""One SimCLR epoch in cmp against the same model, data and loss written as a lightly user writes it.

lightly's side follows its SimCLR example: `SimCLRTransform` applied per sample to PIL
images in DataLoader workers, the two views through the model one after the other,
`NTXentLoss`, SGD. cmp's side is the engine's `Trainer` with the SimCLR preset: views
made batched from uint8 images already on the device. Both train a copy of the same
network (cmp's convnet + MLP head, same initial weights) with the same augmentation
settings, temperature, optimizer settings, batch and number of steps, in fp32. Rounds
alternate between the sides; the ratio is lightly's median epoch time over cmp's
(above 1: cmp is faster). Each lightly epoch starts its workers, as a DataLoader does
by default.

    python -m benchmarks.lightly_comparison             # 5 000 Fashion-MNIST images
    python -m benchmarks.lightly_comparison --images 60000 --device cuda

Needs lightly: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from benchmarks.common import Data, fashion_mnist_or_synthetic, fit, resolve_cell, synchronize
from benchmarks.machine import describe_machine
from cmp.api.loader import Plugins, load_plugins
from cmp.api.results import RunInfo, RunResult
from cmp.engine.build import build_model, resolve_device

TEMPERATURE = 0.2
SGD = {"lr": 0.3, "momentum": 0.9, "weight_decay": 5e-4}


class PILImages(torch.utils.data.Dataset):
    """uint8 images served as PIL images, as torchvision's data sets serve them."""

    def __init__(self, images: Tensor, transform: object) -> None:
        self.images = images.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[object, int]:
        pixels = self.images[index]
        image = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(np.moveaxis(pixels, 0, -1))
        return self.transform(image), 0


@dataclass
class Comparison:
    """Epoch times of both sides, round by round."""

    cmp_seconds: list[float]
    lightly_seconds: list[float]
    steps: int
    workers: int

    @property
    def ratio(self) -> float:
        return statistics.median(self.lightly_seconds) / statistics.median(self.cmp_seconds)

    def detail(self) -> str:
        return (f"cmp {statistics.median(self.cmp_seconds):.2f} s, lightly {statistics.median(self.lightly_seconds):.2f} s "
                f"per epoch of {self.steps} steps (median of {len(self.cmp_seconds)} alternating rounds; lightly's "
                f"transform in {self.workers} DataLoader worker(s))")


def compare(plugins: Plugins, device: torch.device, data: Data, batch: int, rounds: int, workers: int,
            out: Path) -> Comparison:
    """Time `rounds` epochs of each side over `data`, alternating."""
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    cell = resolve_cell(plugins, "simclr", {
        "encoder": {"name": "convnet", "params": {"widths": [32, 64, 128], "convs_per_stage": 2}},
        "augmentation": {"name": "simclr", "params": {"crop_scale": [0.2, 1.0]}},
        "loss": {"name": "nt_xent", "params": {"temperature": TEMPERATURE}},
        "optimizer": {"name": "sgd", "params": SGD},
        "schedule": "constant",
    }, {"batch_size": batch, "epochs": rounds + 1})
    steps = data.images.shape[0] // batch
    model = build_model(cell, plugins.registry, data.info, steps, device)
    network = copy.deepcopy(model.learner.online)  # lightly's side: the same network, same initial weights
    images = data.images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    transform = SimCLRTransform(  # cmp's SimCLR defaults; blur only from 64 pixels up, as cmp's preset
        input_size=data.info.height, cj_prob=0.8, cj_strength=1.0, min_scale=0.2, random_gray_scale=0.2,
        gaussian_blur=0.5 if data.info.height >= 64 else 0.0, hf_prob=0.5,
        normalize={"mean": list(data.info.mean), "std": list(data.info.std)},
    )
    loader = torch.utils.data.DataLoader(
        PILImages(data.images, transform), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    criterion = NTXentLoss(temperature=TEMPERATURE)
    optimizer = torch.optim.SGD(network.parameters(), **SGD)

    def lightly_epoch() -> float:
        started = time.perf_counter()
        network.train()
        total_loss = torch.zeros((), device=device)
        for (x0, x1), _ in loader:
            x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
            z0, z1 = network(x0), network(x1)
            loss = criterion(z0, z1)
            total_loss += loss.detach()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        total_loss.item()  # the epoch's mean loss, as lightly's example prints it
        return time.perf_counter() - started

    run = RunInfo("lightly-comparison", cell.recipe, cell.method, cell.key(), out / "lightly-comparison",
                  cell.config(), device)
    plugins.hook.cmp_run_start(run=run)

    def cmp_epoch() -> float:
        started = time.perf_counter()
        fit(model, cell, images, batch, generator, run, plugins.hook)
        synchronize(device)
        return time.perf_counter() - started

    fit(model, cell, images[:batch], batch, generator, run, plugins.hook)  # warm-up: one step of each side
    (x0, x1), _ = next(iter(torch.utils.data.DataLoader(PILImages(data.images[:batch], transform), batch_size=batch)))
    criterion(network(x0.to(device)), network(x1.to(device))).backward()
    optimizer.zero_grad()
    cmp_seconds, lightly_seconds = [], []
    for _ in range(rounds):
        cmp_seconds.append(cmp_epoch())
        lightly_seconds.append(lightly_epoch())
    plugins.hook.cmp_run_end(run=run, result=RunResult(
        recipe=cell.recipe, method=cell.method, cell="lightly-comparison", key=cell.key(), status="ok"))
    return Comparison(cmp_seconds, lightly_seconds, steps, workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="Fashion-MNIST training images per epoch")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="epochs per side, alternating")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="lightly's DataLoader workers")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto...")
    args = parser.parse_args()
    os.environ.setdefault("CMP_PROGRESS", "0")
    device = resolve_device(args.device)
    data = fashion_mnist_or_synthetic(args.images)
    with tempfile.TemporaryDirectory(prefix="cmp-lightly-") as out:
        result = compare(load_plugins(plugins="none"), device, data, args.batch, args.rounds, args.workers, Path(out))
    print(describe_machine())
    print(f"device {device}; {data.name}, {args.images} images, batch {args.batch}; other jobs on this machine "
          "may have been running")
    print(f"cmp epochs (s):     {', '.join(f'{t:.2f}' for t in result.cmp_seconds)}")
    print(f"lightly epochs (s): {', '.join(f'{t:.2f}' for t in result.lightly_seconds)}")
    print(f"{result.detail()}")
    print(f"lightly / cmp = {result.ratio:.2f}  (goal > 1: cmp faster)")


if __name__ == "__main__":
    main()
