"""Gradient caching: peak memory and step time of a SimCLR step at a large batch, with and
without `train.micro_batch`, and the cost of the second forward.

Each configuration runs in a fresh process, so its peak memory (CPU: resident set size,
`ru_maxrss`; CUDA: max allocated) is its own. The model is the recipes' convnet
(32-64-128, two convs per stage) with an MLP head and NT-Xent over in-batch negatives, on
random 1x28x28 views (augmentation excluded). The extra cost of caching is compared with
the time of one forward pass of the whole batch without gradients: what the method
predicts it should add.

    python -m benchmarks.grad_cache --batch 4096 --micro 256 --steps 3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import resource
import statistics
import time
from typing import Any

import torch

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo
from cmp.engine.grad_cache import cached_step
from cmp.engine.learner import Learner, OnlineNetwork, view_pairs
from cmp_plugins.encoders import convnet
from cmp_plugins.heads import mlp
from cmp_plugins.losses import nt_xent
from cmp_plugins.negatives import in_batch
from cmp_plugins.targets import shared


def build(device: torch.device) -> Learner:
    torch.manual_seed(0)
    info = DataInfo("bench", 1, 28, 28, 10, (0.5,), (0.25,))
    online = OnlineNetwork(convnet(info, widths=(32, 64, 128), convs_per_stage=2), mlp(128, hidden_dim=256, out_dim=128))
    return Learner(online, None, shared(online, 128), in_batch(128), functools.partial(nt_xent, temperature=0.2),
                   view_pairs("symmetric", 2, 2), True).to(device)


def run(mode: str, batch: int, micro: int, steps: int) -> dict[str, float]:
    """Median time of `mode` (plain | cached | forward) and the process's peak memory (MB)."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    learner = build(device)
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 1):
        views = [torch.randn(batch, 1, 28, 28, generator=g).to(device) for _ in range(2)]
        ids = torch.arange(batch, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if mode == "plain":
            learner(views, ids).loss.backward()
        elif mode == "cached":
            cached_step(learner, learner, views, ids, micro, contextlib.nullcontext, lambda loss: loss)
        else:
            with torch.no_grad():
                for start in range(0, batch, micro):
                    learner.embed([v[start : start + micro] for v in views])
        if mode != "forward":
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step is a warm-up
            times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "peak_mb": peak}


def _child(mode: str, batch: int, micro: int, steps: int, out: Any) -> None:
    out.put(run(mode, batch, micro, steps))


def in_fresh_process(mode: str, batch: int, micro: int, steps: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    out = context.SimpleQueue()
    process = context.Process(target=_child, args=(mode, batch, micro, steps, out))
    process.start()
    result = out.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--micro", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    baseline = in_fresh_process("forward", 8, 8, 1)  # the process's memory before any batch
    plain = in_fresh_process("plain", args.batch, args.micro, args.steps)
    cached = in_fresh_process("cached", args.batch, args.micro, args.steps)
    forward = in_fresh_process("forward", args.batch, args.micro, args.steps)
    print(describe_machine())
    print(f"SimCLR step, convnet 32-64-128 x2, batch {args.batch}, {args.steps} steps (median), micro_batch {args.micro}:")
    print("| | step time (s) | peak memory (MB) |")
    print("|---|---:|---:|")
    print(f"| whole batch at once | {plain['seconds']:.2f} | {plain['peak_mb']:,.0f} |")
    print(f"| micro_batch {args.micro} (gradient caching) | {cached['seconds']:.2f} | {cached['peak_mb']:,.0f} |")
    print(f"| a process that ran 8 images (floor) | - | {baseline['peak_mb']:,.0f} |")
    extra = cached["seconds"] - plain["seconds"]
    print(f"caching adds {extra:.2f} s per step ({100 * extra / plain['seconds']:.0f}%); one forward pass of the whole "
          f"batch without gradients takes {forward['seconds']:.2f} s (the expected extra).")
    print(f"peak memory above the floor: {plain['peak_mb'] - baseline['peak_mb']:,.0f} MB -> "
          f"{cached['peak_mb'] - baseline['peak_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
