"""Step time of one SimCLR training step on 1 process against N processes (gloo on CPU,
NCCL on GPUs), with the same global batch, and the share of a step spent gathering keys.

Each process runs the real `Learner` (convnet, MLP head, in-batch negatives gathered with
`cmp.nn.gather`, NT-Xent) wrapped in DistributedDataParallel, on random 1x28x28 inputs
(augmentation excluded: this measures the distributed step itself). The gather's share
is the time of its forward calls (the all-gather of the keys and their ids), measured
with a timer around them; its backward (a reduce-scatter) is inside the backward time.

    python -m benchmarks.distributed_step --nproc 2 --batch 256 --steps 20
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.machine import describe_machine
from cmp.api.contracts import DataInfo
from cmp.distributed import Processes, shard
from cmp.engine.learner import Learner, OnlineNetwork, view_pairs
from cmp_plugins import negatives as negatives_module
from cmp_plugins.encoders import convnet
from cmp_plugins.heads import mlp
from cmp_plugins.losses import nt_xent
from cmp_plugins.targets import shared


def build(device: torch.device) -> Learner:
    torch.manual_seed(0)
    info = DataInfo("bench", 1, 28, 28, 10, (0.5,), (0.25,))
    online = OnlineNetwork(convnet(info, widths=(32, 64, 128)), mlp(128, hidden_dim=256, out_dim=128))
    return Learner(online, None, shared(online, 128), negatives_module.in_batch(128),
                   functools.partial(nt_xent, temperature=0.2), view_pairs("symmetric", 2, 2), True).to(device)


def measure(processes: Processes, batch: int, steps: int, device: torch.device) -> dict[str, float]:
    """Median step time (ms) and the median time inside the gather's forward (ms)."""
    learner = build(device)
    forward: Any = learner
    if processes.distributed:
        ids = [device.index] if device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(learner, device_ids=ids)
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1, momentum=0.9)
    gathered: list[float] = []
    real_gather, real_ids = negatives_module.gather, negatives_module.gather_no_grad

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            out = fn(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            gathered[-1] += time.perf_counter() - started
            return out
        return wrapper

    negatives_module.gather, negatives_module.gather_no_grad = timed(real_gather), timed(real_ids)
    g = torch.Generator().manual_seed(processes.rank)
    mine = shard(batch, processes)
    times = []
    try:
        for step in range(steps + 3):
            views = [torch.randn(batch, 1, 28, 28, generator=g)[mine].to(device) for _ in range(2)]
            ids = torch.arange(batch)[mine].to(device)
            gathered.append(0.0)
            if processes.distributed:
                dist.barrier()
            started = time.perf_counter()
            out = forward(views, ids)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= 3:  # warm-up steps are not counted
                times.append(time.perf_counter() - started)
    finally:
        negatives_module.gather, negatives_module.gather_no_grad = real_gather, real_ids
    return {"step_ms": 1000 * statistics.median(times), "gather_ms": 1000 * statistics.median(gathered[3:])}


def _worker(rank: int, world: int, port: int, batch: int, steps: int, threads: int, queue: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        result = measure(Processes(rank, world, rank), batch, steps, device)
        if rank == 0:
            queue.put(result)
        dist.barrier()  # leave together: a rank tearing down gloo early aborts its peer
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    single = measure(Processes(), args.batch, args.steps, device)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    threads = max(1, cores // args.nproc)
    mp.start_processes(_worker, args=(args.nproc, port, args.batch, args.steps, threads, queue),
                       nprocs=args.nproc, start_method="spawn")
    several = queue.get()
    print(describe_machine())
    print(f"SimCLR step (convnet 32-64-128, 1x28x28, global batch {args.batch}, {args.steps} steps, median):")
    print(f"  1 process ({torch.get_num_threads()} threads)      : {single['step_ms']:8.1f} ms/step")
    print(f"  {args.nproc} processes ({threads} thread(s) each) : {several['step_ms']:8.1f} ms/step, "
          f"of which gather forward {several['gather_ms']:.2f} ms ({100 * several['gather_ms'] / several['step_ms']:.1f}%)")
    print(f"  speed-up {single['step_ms'] / several['step_ms']:.2f}x, scaling efficiency "
          f"{single['step_ms'] / several['step_ms'] / args.nproc:.0%}")


if __name__ == "__main__":
    main()
