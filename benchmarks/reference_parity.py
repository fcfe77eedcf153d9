"""Parity with a peer: SimCLR, MoCo v2 and BYOL trained by lightly's own code and by cmp,
evaluated by one protocol.

lightly's side is written the way lightly's examples write each method (examples/pytorch
simclr.py, moco.py, byol.py): its transforms applied per sample to PIL images in a
DataLoader, its projection and prediction heads, `NTXentLoss` (with a memory bank for
MoCo), `update_momentum` and `cosine_schedule` for the momentum encoders, its
`CosineWarmupScheduler` and `get_weight_decay_parameters` for the optimizer. cmp's side is
a recipe built here: the simclr, moco and byol presets set to the same settings. Both
train cmp's `convnet` encoder (built through cmp, with the same initial weights for a
seed), on the same Fashion-MNIST training subset, with the same augmentation settings,
heads, loss, temperature, queue, momentum, SGD settings, cosine schedule, batch and
epochs, in fp32, 3 seeds each. Each lightly-trained encoder's `state_dict` is saved to a
file and evaluated by cmp as an evaluate-only cell; cmp's cells are evaluated by the
same protocol (kNN and linear probe on frozen features of every training and test image).

The claim under test, stated before any run: for every method and both metrics, the whole
95 % Student-t interval of the paired difference cmp - lightly (paired by seed) lies
inside +-MARGIN_POINTS. With 3 seeds the interval's half-width is 2.48 x the sd of the
differences, so a margin of 1 point could be met only if the seed-to-seed sd of the
difference were under 0.4 points; 2 points is the margin this size can honestly test.

    python -m benchmarks.reference_parity            # 26 minutes on 2 shared CPU cores (load 3-6)
    python -m benchmarks.reference_parity --smoke    # tiny data, 1 seed, 1 epoch: a smoke test

Needs lightly: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import Tensor, nn

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo, ImageData
from cmp.api.loader import Plugins, load_plugins
from cmp.api.registry import Registry
from cmp.api.results import RunResult
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import build_model, resolve_device
from cmp.engine.runner import Runner
from cmp.report.paired import PairedDifference, paired_difference

MARGIN_POINTS = 2.0
"""Equivalence margin, in accuracy points, fixed before the benchmark was first run."""

METHODS = ("simclr", "moco", "byol")
LABELS = {"simclr": "SimCLR", "moco": "MoCo v2", "byol": "BYOL"}
METRICS = {"knn_top1": "kNN top-1", "linear_top1": "linear top-1"}
LIBRARIES = ("cmp", "lightly")

SGD = {"lr": 0.5, "momentum": 0.9, "weight_decay": 5e-4, "lr_scaling": "none"}
"""One optimizer for all three methods, the loss ablation's (recipes/loss_ablation.yaml)."""
WARMUP_EPOCHS = 1
TEMPERATURE = 0.2
MOCO_MOMENTUM = 0.99
BYOL_MOMENTUM = 0.99
SIMCLR_HEAD = (512, 128)
MOCO_HEAD = (512, 128)
BYOL_HEAD = (1024, 256)
MOCO_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
"""MoCo v2's colour jitter: lightly's `MoCoV2Transform` defaults, set on cmp's `simclr` augmentation."""


@dataclass(frozen=True)
class Size:
    """How much data and training: the full benchmark, or the smoke test's."""

    images: int
    test_images: int | None
    epochs: int
    batch: int
    widths: tuple[int, ...]
    queue: int
    seeds: tuple[int, ...]
    linear_iterations: int


FULL = Size(images=2500, test_images=None, epochs=5, batch=256, widths=(16, 32, 64), queue=1024,
            seeds=(0, 1, 2), linear_iterations=1000)
"""A quarter of the loss ablation's training set (10 000 images, queue 4096) at its batch, for half its epochs:
45 steps per cell, 18 trainings (cmp and lightly, 3 methods, 3 seeds) sized for 2 CPU cores."""
SMOKE = Size(images=96, test_images=100, epochs=1, batch=32, widths=(8, 16), queue=64, seeds=(0,),
             linear_iterations=20)


def method_parts(method: str, size: Size) -> dict[str, Any]:
    """What the benchmark sets on a cmp preset so that it trains what lightly's side trains."""
    if method == "simclr":
        return {
            "augmentation": {"name": "simclr", "params": {"crop_scale": [0.2, 1.0]}},
            "projection_head": {"name": "mlp", "params": {"hidden_dim": SIMCLR_HEAD[0], "out_dim": SIMCLR_HEAD[1]}},
            "loss": {"name": "nt_xent", "params": {"temperature": TEMPERATURE}},
            "joint_forward": False,  # lightly's example: model(x0), model(x1)
        }
    if method == "moco":
        return {
            "augmentation": {"name": "simclr", "params": {"crop_scale": [0.2, 1.0], **MOCO_JITTER}},
            "projection_head": {"name": "mlp", "params": {"hidden_dim": MOCO_HEAD[0], "out_dim": MOCO_HEAD[1]}},
            "target": {"name": "momentum", "params": {"momentum": MOCO_MOMENTUM, "bn_shuffle_groups": 1}},
            "negative_source": {"name": "queue", "params": {"size": size.queue}},
            "loss": {"name": "nt_xent", "params": {"temperature": TEMPERATURE}},
        }
    if method == "byol":
        return {
            "augmentation": {"name": "byol", "params": {"blur_probs": [0.0, 0.0]}},  # no blur: lightly's CIFAR example
            "projection_head": {"name": "mlp", "params": {"hidden_dim": BYOL_HEAD[0], "out_dim": BYOL_HEAD[1]}},
            "predictor": {"name": "mlp", "params": {"hidden_dim": BYOL_HEAD[0], "out_dim": BYOL_HEAD[1]}},
            "target": {"name": "momentum", "params": {"momentum": BYOL_MOMENTUM, "schedule": "cosine"}},
        }
    raise ValueError(f"unknown method {method!r}")


def parity_recipe(size: Size, device: str, dataset: str) -> dict[str, Any]:
    """cmp's side: the three presets at the shared settings, one cell per method and seed."""
    return {
        "name": "reference_parity",
        "description": "SimCLR, MoCo v2 and BYOL at the settings benchmarks/reference_parity.py trains lightly's side with.",
        "data": {"dataset": dataset, "subset": size.images, "test_subset": size.test_images},
        "train": {"epochs": size.epochs, "batch_size": size.batch, "seed": 0, "device": device, "precision": "fp32"},
        "defaults": {
            "encoder": {"name": "convnet", "params": {"widths": list(size.widths)}},
            "optimizer": {"name": "sgd", "params": SGD},
            "schedule": {"name": "cosine", "params": {"warmup_epochs": WARMUP_EPOCHS}},
        },
        "methods": {method: {"preset": method, **method_parts(method, size)} for method in METHODS},
        "sweep": {"train.seed": list(size.seeds)},
        "eval": evaluators(size),
        "baselines": [],
    }


def evaluators(size: Size) -> dict[str, Any]:
    """cmp's protocol, as the loss ablation runs it."""
    return {"knn": {"k": 200, "temperature": 0.1}, "linear": {"max_iter": size.linear_iterations}}


def resolve_recipe(raw: dict[str, Any], plugins: Plugins, folder: Path) -> list[Cell]:
    """The cells of a recipe written to `folder` and resolved as `cmp run` resolves it."""
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return resolve(load_recipe(path), plugins.registry)


# lightly's side ------------------------------------------------------------------------------


class PILImages(torch.utils.data.Dataset):
    """uint8 images served as PIL images through a lightly transform, as torchvision's data sets serve them."""

    def __init__(self, images: Tensor, transform: Callable[[Image.Image], Any]) -> None:
        self.images = images.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        pixels = self.images[index]
        image = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(np.moveaxis(pixels, 0, -1))
        return self.transform(image), 0


def lightly_transform(method: str, size: int, mean: Sequence[float], std: Sequence[float]) -> Any:
    """lightly's transform of each method, at the settings `method_parts` gives cmp (no blur at 28 px)."""
    from lightly.transforms import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
        MoCoV2Transform,
        SimCLRTransform,
    )

    normalize = {"mean": list(mean), "std": list(std)}
    if method == "simclr":
        return SimCLRTransform(input_size=size, min_scale=0.2, gaussian_blur=0.0, normalize=normalize)
    if method == "moco":
        return MoCoV2Transform(input_size=size, min_scale=0.2, gaussian_blur=0.0, normalize=normalize)
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=size, gaussian_blur=0.0, normalize=normalize),
        view_2_transform=BYOLView2Transform(input_size=size, gaussian_blur=0.0, normalize=normalize),
    )


class LightlySimCLR(nn.Module):
    """lightly's SimCLR example: backbone + `SimCLRProjectionHead`."""

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(feature_dim, *SIMCLR_HEAD)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x).flatten(start_dim=1))


class LightlyMoCo(nn.Module):
    """lightly's MoCo example: backbone + `MoCoProjectionHead` and their momentum copies.

    The head has BatchNorm on its hidden layer (`batch_norm=True`), as cmp's MoCo preset's."""

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(feature_dim, *MOCO_HEAD, batch_norm=True)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def forward_momentum(self, x: Tensor) -> Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()


class LightlyBYOL(nn.Module):
    """lightly's BYOL example: backbone, `BYOLProjectionHead`, `BYOLPredictionHead`, momentum copies."""

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(feature_dim, *BYOL_HEAD)
        self.prediction_head = BYOLPredictionHead(BYOL_HEAD[1], *BYOL_HEAD)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

    def forward_momentum(self, x: Tensor) -> Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()


def trainable_modules(model: nn.Module) -> list[nn.Module]:
    """The modules SGD trains: every child but the momentum copies."""
    return [module for name, module in model.named_children() if not name.endswith("_momentum")]


def lightly_optimizer(model: nn.Module, total_steps: int, steps_per_epoch: int) -> tuple[torch.optim.SGD, Any]:
    """SGD without weight decay on biases and norms (`get_weight_decay_parameters`, as lightly's
    benchmarks build it, and as cmp's `sgd` does) and `CosineWarmupScheduler` stepped per step."""
    from lightly.models.utils import get_weight_decay_parameters
    from lightly.utils.scheduler import CosineWarmupScheduler

    decayed, not_decayed = get_weight_decay_parameters(trainable_modules(model))
    settings = {key: value for key, value in SGD.items() if key != "lr_scaling"}
    optimizer = torch.optim.SGD([{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}], **settings)
    schedule = CosineWarmupScheduler(optimizer, warmup_epochs=WARMUP_EPOCHS * steps_per_epoch, max_epochs=total_steps,
                                     end_value=0.0)
    return optimizer, schedule


def lightly_batches(images: Tensor, transform: Any, batch: int, epochs: int, seed: int, workers: int,
                    device: torch.device) -> Iterator[tuple[int, Tensor, Tensor]]:
    """(step, view 0, view 1) for every step of `epochs` epochs of a shuffling DataLoader."""
    loader = torch.utils.data.DataLoader(
        PILImages(images, transform), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    step = 0
    for _ in range(epochs):
        for (x0, x1), _ in loader:
            yield step, x0.to(device), x1.to(device)
            step += 1


def train_lightly(method: str, backbone: nn.Module, images: Tensor, transform: Any, size: Size, seed: int,
                  workers: int, device: torch.device) -> nn.Module:
    """Train `backbone` with lightly's code for `method`; returns the trained backbone."""
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    random.seed(seed)
    np.random.seed(seed)
    feature_dim = int(backbone.feature_dim)
    model_class = {"simclr": LightlySimCLR, "moco": LightlyMoCo, "byol": LightlyBYOL}[method]
    model = model_class(backbone, feature_dim).to(device)
    model.train()
    steps_per_epoch = images.shape[0] // size.batch
    total_steps = steps_per_epoch * size.epochs
    optimizer, schedule = lightly_optimizer(model, total_steps, steps_per_epoch)
    if method == "simclr":
        criterion: nn.Module = NTXentLoss(temperature=TEMPERATURE)
    elif method == "moco":
        criterion = NTXentLoss(temperature=TEMPERATURE, memory_bank_size=(size.queue, MOCO_HEAD[1]))
    else:
        criterion = NegativeCosineSimilarity()
    for step, x0, x1 in lightly_batches(images, transform, size.batch, size.epochs, seed, workers, device):
        if method == "simclr":
            loss = criterion(model(x0), model(x1))
        elif method == "moco":
            update_momentum(model.backbone, model.backbone_momentum, m=MOCO_MOMENTUM)
            update_momentum(model.projection_head, model.projection_head_momentum, m=MOCO_MOMENTUM)
            loss = criterion(model(x0), model.forward_momentum(x1))
        else:
            momentum = cosine_schedule(step, total_steps, BYOL_MOMENTUM, 1.0)
            update_momentum(model.backbone, model.backbone_momentum, m=momentum)
            update_momentum(model.projection_head, model.projection_head_momentum, m=momentum)
            p0, z0 = model(x0), model.forward_momentum(x0)
            p1, z1 = model(x1), model.forward_momentum(x1)
            # BYOL's 2 - 2 cos averaged over the two pairs, cmp's `cosine_regression`; lightly's example
            # writes 0.5 (a + b) with a = -cos, the same gradient at half the scale (half the learning rate).
            loss = 2 + criterion(p0, z1) + criterion(p1, z0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
    return model.backbone


def initial_encoder(cell: Cell, registry: Registry, info: DataInfo, steps_per_epoch: int, device: torch.device) -> nn.Module:
    """cmp's convnet as cmp builds it for `cell`: the same initial weights as the cmp cell of that seed."""
    model = build_model(cell, registry, info, steps_per_epoch, device)
    return copy.deepcopy(model.learner.online.encoder)


def lightly_weights(cells: Iterable[Cell], runner: Runner, size: Size, workers: int, device: torch.device,
                    folder: Path) -> dict[tuple[str, int], Path]:
    """Train lightly's side for every cmp cell's method and seed; the encoders' state_dict files."""
    files: dict[tuple[str, int], Path] = {}
    for cell in cells:
        data = runner.data_for(cell.data)
        assert isinstance(data, ImageData), "lightly's side reads the training images from memory"
        images, info = data.train_images, data.info()
        backbone = initial_encoder(cell, runner.registry, info, images.shape[0] // size.batch, device)
        transform = lightly_transform(cell.method, info.height, info.mean, info.std)
        started = time.perf_counter()
        trained = train_lightly(cell.method, backbone, images, transform, size, cell.train.seed, workers, device)
        path = folder / f"lightly-{cell.method}-seed{cell.train.seed}.pt"
        torch.save({key: value.cpu() for key, value in trained.state_dict().items()}, path)
        files[(cell.method, cell.train.seed)] = path
        log(f"lightly {cell.method} seed {cell.train.seed}: trained in {time.perf_counter() - started:.0f} s -> {path.name}")
    return files


# evaluation and the table --------------------------------------------------------------------


def evaluation_recipe(files: dict[str, Path], seed: int, size: Size, device: str, dataset: str) -> dict[str, Any]:
    """lightly's encoders of one seed as evaluate-only cells (`train.epochs: 0`, `weights:`),
    on cmp's data and protocol, with the seed of the cmp cells they are paired with."""
    return {
        "name": f"reference_parity_lightly_seed{seed}",
        "description": "Encoders trained by lightly's code (benchmarks/reference_parity.py), evaluated by cmp.",
        "data": {"dataset": dataset, "subset": size.images, "test_subset": size.test_images},
        "train": {"epochs": 0, "seed": seed, "device": device, "precision": "fp32"},
        "methods": {
            f"lightly_{method}": {"encoder": {"name": "convnet", "params": {"widths": list(size.widths), "weights": str(path)}}}
            for method, path in files.items()
        },
        "eval": evaluators(size),
        "baselines": [],
    }


def evaluate_weights(files: dict[tuple[str, int], Path], size: Size, device: str, dataset: str, plugins: Plugins,
                     runner: Runner, folder: Path) -> list[RunResult]:
    """Every lightly-trained encoder evaluated by cmp as an evaluate-only cell."""
    results = []
    for seed in sorted({seed for _, seed in files}):
        of_seed = {method: path for (method, s), path in files.items() if s == seed}
        for cell in resolve_recipe(evaluation_recipe(of_seed, seed, size, device, dataset), plugins, folder):
            result = runner.run_cell(cell)
            log(f"lightly {cell.method.removeprefix('lightly_')} seed {seed}: evaluated by cmp, {result.status} "
                f"in {result.wall_time_s:.0f} s")
            results.append(result)
    return results


@dataclass
class Scores:
    """One metric of one (library, method) per seed."""

    values: dict[int, float]

    def summary(self) -> str:
        points = [100 * v for v in self.values.values()]
        if len(points) < 2:
            return f"{points[0]:.2f}"
        return f"{statistics.mean(points):.2f} ± {statistics.stdev(points):.2f}"


def scores(results: Iterable[RunResult], library: str, method_of: Callable[[RunResult], str]) -> dict[tuple[str, str, str], Scores]:
    """(library, method, metric) -> the metric per seed, from finished cells."""
    table: dict[tuple[str, str, str], Scores] = {}
    for result in results:
        if not result.ok:
            raise SystemExit(f"{library} cell {result.cell} failed: {result.reason}")
        seed = int(result.config["train"]["seed"])
        for metric in METRICS:
            table.setdefault((library, method_of(result), metric), Scores({})).values[seed] = result.metrics[metric]
    return table


def verdict(difference: PairedDifference | None) -> str:
    """Whether the paired difference's 95 % interval shows equivalence within the margin."""
    if difference is None or difference.half_width is None:
        return "untested (one seed)"
    low, high = 100 * (difference.mean - difference.half_width), 100 * (difference.mean + difference.half_width)
    if -MARGIN_POINTS <= low and high <= MARGIN_POINTS:
        return f"equivalent (inside ±{MARGIN_POINTS:g})"
    if low > 0 or high < 0:
        return f"differs (interval excludes 0, not inside ±{MARGIN_POINTS:g})"
    return f"not shown (interval wider than ±{MARGIN_POINTS:g})"


def report(table: dict[tuple[str, str, str], Scores]) -> list[str]:
    """The accuracy table and the paired differences, as Markdown lines."""
    lines = ["| library | method | " + " | ".join(f"{label} (%)" for label in METRICS.values()) + " | seeds |",
             "|---|---|" + "---:|" * len(METRICS) + "---|"]
    for method in METHODS:
        for library in LIBRARIES:
            cells = [table[(library, method, metric)] for metric in METRICS]
            seeds = ", ".join(str(s) for s in sorted(cells[0].values))
            lines.append(f"| {library} | {LABELS[method]} | " + " | ".join(c.summary() for c in cells) + f" | {seeds} |")
    lines += ["", f"Paired by seed, cmp − lightly, in points: mean, 95 % t interval; margin ±{MARGIN_POINTS:g} (stated in advance).",
              "", "| method | metric | cmp − lightly | 95 % interval | verdict |", "|---|---|---:|---|---|"]
    for method in METHODS:
        for metric, label in METRICS.items():
            difference = paired_difference(table[("cmp", method, metric)].values, table[("lightly", method, metric)].values)
            assert difference is not None, "cmp and lightly share no seed"
            interval = ("n/a" if difference.half_width is None else
                        f"[{100 * (difference.mean - difference.half_width):+.2f}, {100 * (difference.mean + difference.half_width):+.2f}]")
            lines.append(f"| {LABELS[method]} | {label} | {100 * difference.mean:+.2f} | {interval} | {verdict(difference)} |")
    return lines


def log(message: str) -> None:
    print(f"reference_parity: {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1 seed, 1 epoch: checks that it runs, measures nothing")
    parser.add_argument("--dataset", default="fashion_mnist", help="cmp data set (the smoke test may use digits)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto...")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of lightly's side (0: in the main process)")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs and weight files here (default: a temporary folder)")
    args = parser.parse_args()
    os.environ.setdefault("CMP_PROGRESS", "0")
    size = SMOKE if args.smoke else FULL
    device = resolve_device(args.device)
    print(describe_machine())
    print(f"{args.dataset}: {size.images} training images, {'all' if size.test_images is None else size.test_images} "
          f"test images; {size.epochs} epochs of batch {size.batch}; convnet {'-'.join(map(str, size.widths))}; "
          f"seeds {', '.join(map(str, size.seeds))}; device {device}; load average at the start "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cmp-parity-") as temporary:
        folder = args.out or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        table = run(size, args.dataset, args.device, device, args.workers, folder)
    print()
    print("\n".join(report(table)))
    print(f"\nwall time {time.perf_counter() - started:.0f} s; load average at the end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other jobs on this machine count in it)")

def run(size: Size, dataset: str, device_name: str, device: torch.device, workers: int,
        folder: Path) -> dict[tuple[str, str, str], Scores]:
    """Train both sides, evaluate all encoders, and collect the scores."""
    plugins = load_plugins(plugins="none")
    cells = resolve_recipe(parity_recipe(size, device_name, dataset), plugins, folder)
    runner = Runner(plugins, folder / "runs", echo=log)
    cmp_results = []
    for cell in cells:
        result = runner.run_cell(cell)
        log(f"cmp {cell.method} seed {cell.train.seed}: {result.status} in {result.wall_time_s:.0f} s")
        cmp_results.append(result)
    weights = lightly_weights(cells, runner, size, workers, device, folder)
    lightly_results = evaluate_weights(weights, size, device_name, dataset, plugins, runner, folder)
    return {**scores(cmp_results, "cmp", lambda r: r.method),
            **scores(lightly_results, "lightly", lambda r: r.method.removeprefix("lightly_"))}


if __name__ == "__main__":
    main()
