"""Starting and stopping the gloo process groups the multi-process tests run in.

A test spawns its workers with `spawn_within` (each worker gets its rank and a free
port first, and all are killed if they overrun the deadline, so no process outlives the
test); each worker runs its body inside `gloo_process`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gloo_process(rank: int, world: int, port: int) -> Iterator[None]:
    """This process as rank `rank` of a gloo group of `world` on the loopback interface,
    one CPU thread; on a normal exit every rank waits for the others before the group is
    destroyed (a rank that left while another's gloo pairs still talked to it aborted)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn_within(worker: Callable[..., None], args: tuple[Any, ...], nprocs: int, seconds: float) -> None:
    """Run `worker(rank, port, *args)` in `nprocs` processes; kill them all and fail the
    test if they have not finished within `seconds`."""
    context = mp.spawn(worker, args=(free_port(), *args), nprocs=nprocs, join=False)
    deadline = time.monotonic() + seconds
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {nprocs} processes did not finish within {seconds:g} s")


def assert_same_loss_and_gradients(got: dict[str, Any], want: dict[str, Any], atol: float = 1e-5) -> None:
    """A rank's recorded run (`loss`, `grads`: one {parameter: gradient} per step) equals the single process's."""
    assert got["loss"] == pytest.approx(want["loss"], abs=atol)
    assert len(got["grads"]) == len(want["grads"])
    for step, (want_grads, got_grads) in enumerate(zip(want["grads"], got["grads"])):
        assert want_grads.keys() == got_grads.keys()
        for param, expected in want_grads.items():
            torch.testing.assert_close(got_grads[param], expected, atol=atol, rtol=0, msg=f"step {step} {param}")
