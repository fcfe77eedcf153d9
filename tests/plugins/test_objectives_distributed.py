"""2 processes x B/2 train SwAV and DINO as 1 process x B: codes and centre over the global batch.

SwAV's Sinkhorn-Knopp normalises over every process's rows (and the queue's, each queued
row counted once), DINO's centre is the mean teacher output of every process. Two gloo
processes, each with half of every global batch, against this process with all of it,
float64, a BatchNorm-free encoder, 3 steps through the learner with DDP: the loss of every
step, every parameter's gradient (after DDP's averaging), and after the last step every
parameter and buffer (prototypes, the SwAV queue, DINO's centre and teacher) agree to
1e-5, with the frozen parameters (SwAV's prototypes, DINO's last layer) frozen for the
first two steps and trained in the third. The processes are started and joined by the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from cmp.distributed import Processes, mean_across, shard
from tests.helpers.objective_learners import batches, build, optimizer_for, tensors
from tests.helpers.processes import assert_same_loss_and_gradients, gloo_process, spawn_within

STEPS, BATCH, WORLD = 3, 16, 2
METHODS = ("swav", "dino")


def train(method: str, processes: Processes) -> dict[str, Any]:
    """3 steps; the loss (mean over processes), gradients, final state and progress."""
    learner = build(method)
    forward: Any = DistributedDataParallel(learner) if processes.distributed else learner
    optimizer = optimizer_for(learner)
    record: dict[str, Any] = {"loss": [], "grads": []}
    for step, (views, ids) in enumerate(batches(STEPS, BATCH)):
        mine = shard(BATCH, processes)
        out = forward([v[mine] for v in views], ids[mine])
        optimizer.zero_grad()
        out.loss.backward()
        record["loss"].append(mean_across(out.loss.detach(), processes).item())
        record["grads"].append({n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None})
        optimizer.step()
        learner.after_step(out.batch, (step + 1) / STEPS)
    record["state"] = tensors(learner.state_dict())
    record["progress"] = learner.progress
    return record


def worker(rank: int, port: int, out: str) -> None:
    torch.set_default_dtype(torch.float64)
    with gloo_process(rank, WORLD, port):
        processes = Processes(rank, WORLD, rank)
        torch.save({method: train(method, processes) for method in METHODS}, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("objectives_ddp")
    spawn_within(worker, (str(out),), nprocs=WORLD, seconds=240)
    torch.set_default_dtype(torch.float64)
    try:
        single = {method: train(method, Processes()) for method in METHODS}
    finally:
        torch.set_default_dtype(torch.float32)
    return {"single": single, "ranks": [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]}


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_with_half_batches_train_as_one_with_the_whole_batch(runs: dict[str, Any], method: str) -> None:
    single = runs["single"][method]
    for rank in runs["ranks"]:
        got = rank[method]
        assert_same_loss_and_gradients(got, single)
        assert got["state"].keys() == single["state"].keys()
        for key, want in single["state"].items():
            torch.testing.assert_close(got["state"][key], want, atol=1e-5, rtol=0, msg=key)
        assert got["progress"] == single["progress"] == 1.0


def test_the_swav_queue_and_prototypes_are_the_whole_batchs_on_every_process(runs: dict[str, Any]) -> None:
    want = runs["single"]["swav"]["state"]
    assert want["objective.queue.filled"].item() == 32  # 3 pushes of 16 into 32 rows: full, the oldest overwritten
    assert want["objective.queue.entries"].shape == (32, 2 * 8)  # both global views' embeddings per image
    for rank in runs["ranks"]:
        for key in ("objective.queue.entries", "objective.prototypes.weight"):
            assert torch.equal(rank["swav"]["state"][key], runs["ranks"][0]["swav"]["state"][key]), key
            torch.testing.assert_close(rank["swav"]["state"][key], want[key], atol=1e-6, rtol=0, msg=key)


def test_the_dino_centre_is_the_global_batchs_on_every_process(runs: dict[str, Any]) -> None:
    want = runs["single"]["dino"]["state"]["objective.center"]
    assert want.abs().sum() > 0
    for rank in runs["ranks"]:
        torch.testing.assert_close(rank["dino"]["state"]["objective.center"], want, atol=1e-7, rtol=0)


@pytest.mark.parametrize(("method", "frozen"), [("swav", "objective.prototypes.weight"), ("dino", "online.head.last_layer.weight")])
def test_a_frozen_parameter_is_untouched_until_its_fraction_then_trained(method: str, frozen: str) -> None:
    learner = build(method)
    optimizer = optimizer_for(learner)
    values = [dict(learner.named_parameters())[frozen].detach().clone()]
    for step, (views, ids) in enumerate(batches(STEPS, BATCH)):
        out = learner(views, ids)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        learner.after_step(out.batch, (step + 1) / STEPS)
        values.append(dict(learner.named_parameters())[frozen].detach().clone())
    if method == "swav":  # normalised in place at each step start: compare directions
        values = [torch.nn.functional.normalize(v, dim=1) for v in values]
    assert torch.allclose(values[0], values[1]) and torch.allclose(values[1], values[2])  # progress 0 and 1/3 < 0.4
    assert not torch.allclose(values[2], values[3])  # progress 2/3: trained
