"""fp32 against bf16 training steps of a recipe's method on this machine, and whether the
rule of `precision: auto` (`cmp.precision`) chose the faster.

Both sides are the engine's own step (`Trainer`: the recipe's augmentation, encoder, head,
loss, optimizer and channels_last), built from the recipe with the same seed, one in fp32
and one under bf16 autocast, on the same images. Rounds alternate which side goes first,
so drifts of a shared machine hit both; each side's figure is the median of its rounds'
step times, after one warm-up round each.

    python -m benchmarks.precision --recipe recipes/simclr_vs_moco.yaml --method simclr
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo, ImageData
from cmp.api.loader import load_plugins
from cmp.api.registry import Registry
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.devices import resolve_device
from cmp.engine.build import Model, build_model
from cmp.engine.runner import Runner, SilentHooks
from cmp.engine.trainer import TrainConfig, Trainer
from cmp.precision import BF16_CPU_FLAGS, cpu_flags, fastest_precision

SIDES = ("fp32", "bf16")


@dataclass
class Side:
    """One precision's model (built from the recipe with its seed), data order and round times."""

    precision: str
    model: Model
    generator: torch.Generator
    times: list[float] = field(default_factory=list)


def build_side(cell: Cell, registry: Registry, info: DataInfo, steps: int, device: torch.device, precision: str) -> Side:
    torch.manual_seed(cell.train.seed)
    model = build_model(cell, registry, info, steps, device)
    return Side(precision, model, torch.Generator(device=device).manual_seed(cell.train.seed))


def step_seconds(side: Side, cell: Cell, images: torch.Tensor, batch: int) -> float:
    """Seconds per step of one round: one short epoch of the engine's loop over `images`."""
    config = TrainConfig(epochs=1, batch_size=batch, log_every=10**9, precision=side.precision,
                         channels_last=cell.train.channels_last, collapse_std=0.0)
    model = side.model
    trainer = Trainer(model.learner, model.augmentation, images, model.optimizer, model.schedule, side.generator,
                      config, None, SilentHooks())
    started = time.perf_counter()
    summary = trainer.fit()
    return (time.perf_counter() - started) / summary.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("recipes/simclr_vs_moco.yaml"))
    parser.add_argument("--method", help="one of the recipe's methods (default: its first)")
    parser.add_argument("--batch", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per precision")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    plugins = load_plugins(plugins="none")
    cells = resolve(load_recipe(args.recipe, args.overrides), plugins.registry)
    method = args.method or cells[0].method
    cell = next(c for c in cells if c.method == method)
    device = resolve_device(cell.train.device)
    batch = args.batch or cell.train.batch_size
    data = Runner(plugins, Path("unused")).data_for(cell.data)
    if not isinstance(data, ImageData):
        raise SystemExit(f"{args.recipe}: the benchmark times a data set held in memory, not a streamed one")
    images = data.train_images[: batch * args.steps].to(device)
    if images.shape[0] < batch * args.steps:
        raise SystemExit(f"the data set has {images.shape[0]} training images, fewer than {args.steps} steps of {batch}")

    both = [build_side(cell, plugins.registry, data.info(), args.steps, device, precision) for precision in SIDES]
    for side in both:  # warm-up: first-call allocations, oneDNN's choice of kernels
        step_seconds(side, cell, images, batch)
    for r in range(args.rounds):
        for side in both if r % 2 == 0 else both[::-1]:
            side.times.append(step_seconds(side, cell, images, batch))
        done = ", ".join(f"{side.precision} {side.times[-1] * 1000:.0f} ms/step" for side in both)
        print(f"round {r + 1} of {args.rounds}: {done}", file=sys.stderr, flush=True)

    median = {side.precision: statistics.median(side.times) for side in both}
    chosen = fastest_precision(device)
    faster = min(median, key=median.__getitem__)
    flags = sorted(cpu_flags() & BF16_CPU_FLAGS) if device.type == "cpu" else []
    print(describe_machine())
    print(f"recipe {args.recipe}, method {method}, batch {batch}, channels_last {cell.train.channels_last}, "
          f"device {device}, {args.rounds} rounds x {args.steps} steps per precision (alternating, after a warm-up)")
    print()
    print("| precision | steps/s | images/s | ms/step (median) | rounds (ms/step) |")
    print("|---|---:|---:|---:|---|")
    for side in both:
        seconds = median[side.precision]
        rounds = ", ".join(f"{t * 1000:.1f}" for t in side.times)
        print(f"| {side.precision} | {1 / seconds:.2f} | {batch / seconds:,.0f} | {seconds * 1000:.1f} | {rounds} |")
    print()
    print(f"bf16 / fp32 speed: {median['fp32'] / median['bf16']:.2f}x")
    where = f"bf16 CPU flags: {', '.join(flags) or 'none'}" if device.type == "cpu" else f"device {device}"
    print(f"precision: auto chooses {chosen} here ({where}); the faster was {faster}: "
          f"{'the rule chose the faster' if chosen == faster else 'the rule did NOT choose the faster'}")


if __name__ == "__main__":
    main()
