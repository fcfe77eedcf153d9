"""One run on many processes with PyTorch's own engine: torchrun and DistributedDataParallel.

`cmp run --nproc N RECIPE` starts N workers on this machine through
`torch.distributed.run` (what `torchrun` is); `torchrun ... -m cmp run RECIPE` does the
same on one or many machines. Each worker calls `init_processes`, which reads the
launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK) and joins the process group: NCCL
for GPUs, gloo for CPUs. Rank 0 owns the files (results, checkpoints, TensorBoard, the
progress display); every rank trains its share of each global batch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from cmp.errors import CmpError

TIMEOUT_ENV = "CMP_DIST_TIMEOUT_S"
"""Seconds a collective may wait for the other processes before failing (default 600)."""


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes that train one run together."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Processes()


def launched() -> bool:
    """Whether a launcher (torchrun, `cmp run --nproc`) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    """How many processes train together: 1 unless torch.distributed is initialised.

    The live process group, for code that is not handed a `Processes` (the building blocks
    in `cmp.nn`, which re-exports this for plugins)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's index among them: 0 unless torch.distributed is initialised."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_processes(device: str, backend: str) -> Processes:
    """Join the launcher's process group (once); one process alone gets `SINGLE`.

    `backend` auto is NCCL when the run's device is a CUDA GPU, else gloo. Each process
    uses the GPU of its local rank.
    """
    if not launched():
        return SINGLE
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    uses_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    chosen = backend if backend != "auto" else ("nccl" if uses_cuda else "gloo")
    if chosen == "nccl" and not torch.cuda.is_available():
        raise CmpError("NCCL needs CUDA GPUs and this machine has none; use gloo (or auto)", where="train.backend")
    if uses_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        try:
            with _native_stderr_kept_on_success():
                dist.init_process_group(chosen, timeout=timeout)
        except Exception as exc:  # no rendezvous: unset or unreachable MASTER_ADDR/PORT, a timeout
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CmpError(
                f"cannot join the other {world - 1} process(es) (rank {rank} of {world}): {first}",
                where="torch.distributed rendezvous",
            ) from None
    return Processes(rank, world, local)


@contextlib.contextmanager
def _native_stderr_kept_on_success() -> Iterator[None]:
    """Hold back what C++ code writes to stderr (c10d prints stack frames for every failed
    connection try); shown after success, dropped on failure, where one line says why."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def process_device(processes: Processes, device: torch.device) -> torch.device:
    """The device of this process: its local GPU when the run is on CUDA."""
    if processes.distributed and device.type == "cuda":
        return torch.device("cuda", processes.local_rank)
    return device


def finish_processes() -> None:
    """Leave the process group (after the cells, before rank 0 writes baselines and the report)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast(value: Any, processes: Processes) -> Any:
    """Rank 0's `value` on every process (any picklable object)."""
    if not processes.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any, processes: Processes) -> list[Any]:
    """Every process's `value`, in rank order."""
    if not processes.distributed:
        return [value]
    out: list[Any] = [None] * processes.world_size
    dist.all_gather_object(out, value)
    return out


def mean_across(value: torch.Tensor, processes: Processes) -> torch.Tensor:
    """The mean of a scalar tensor over every process (the same on each)."""
    if not processes.distributed:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / processes.world_size


def gather_rows(x: torch.Tensor, processes: Processes) -> torch.Tensor:
    """Concatenate each process's rows (counts may differ by one) in rank order."""
    if not processes.distributed:
        return x
    counts = all_gather_objects(int(x.shape[0]), processes)
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts)])


def shard(total: int, processes: Processes) -> slice:
    """This process's contiguous share of `total` items (the first shares one larger)."""
    base, extra = divmod(total, processes.world_size)
    start = processes.rank * base + min(processes.rank, extra)
    return slice(start, start + base + (processes.rank < extra))


def launch(nproc: int, argv: list[str]) -> int:
    """`cmp run --nproc N ...`: run `cmp` with `argv` in N workers through torch's launcher.

    Returns the exit status; a worker that dies (a signal, an exception) is reported as
    one line naming its rank, and the launcher stops the others.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "-m", "cmp", *argv]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        print(f"cmp: error: {describe_failure(exc)}", file=sys.stderr)
        return 1
    return 0


def describe_failure(exc: Any) -> str:
    """One line naming the ranks that failed and how (exit code or signal)."""
    parts = []
    for rank, failure in sorted(exc.failures.items()):
        code = failure.exitcode
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        parts.append(f"rank {rank} (pid {failure.pid}) {how}")
    return "distributed run stopped: " + "; ".join(parts) + "; the other ranks were stopped"
