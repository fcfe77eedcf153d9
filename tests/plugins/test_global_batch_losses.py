"""2 processes x B/2 compute the losses of 1 process x B: the batch statistics are global.

Barlow Twins' normalisation and cross-correlation, VICReg's variance and covariance and
DCLW's weights depend on the whole batch, so each process must see the global batch's
statistics with the right gradient (lightly issue 1977: Barlow Twins' gradient off by
the world size under DDP). Two gloo processes, each given half of a fixed batch, against
this process with all of it, float64:

- the loss: its mean over the processes equals the one-process loss;
- the parameters' gradient: a linear map before the loss, wrapped in DDP (which averages
  parameter gradients over the processes), gets the one-process gradient;
- the inputs' gradient: each process gets W times the one-process gradient on its own
  rows, the factor DDP's averaging then removes (cmp.nn.gather's convention).

Also DCL and MoCo v3's loss with `in_batch` negatives, whose negatives are gathered.
The processes are started and stopped by the test, within a deadline.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from cmp.api.contracts import PairBatch
from cmp_plugins.contrastive_losses import dcl, dclw, moco_v3_infonce
from cmp_plugins.negatives import InBatchNegatives
from cmp_plugins.redundancy_reduction import barlow_twins, vicreg
from tests.helpers.processes import gloo_process, spawn_within

WORLD, BATCH, IN, DIM = 2, 8, 6, 5

CASES: dict[str, tuple[Callable[..., Tensor], str, str | None]] = {
    # name: (loss with its parameters, pairs, in_batch keys or None for no negatives)
    "barlow_twins": (barlow_twins, "one_way", None),
    "barlow_twins-unbiased": (functools.partial(barlow_twins, std="unbiased", off_diagonal_weight=0.1), "one_way", None),
    "vicreg": (vicreg, "one_way", None),
    "vicreg-paper": (functools.partial(vicreg, halve_variance=False, target_std=2.0), "one_way", None),
    "dclw": (functools.partial(dclw, temperature=0.3), "symmetric", "all"),
    "dclw-weight_gradient": (functools.partial(dclw, temperature=0.3, weight_gradient=True), "symmetric", "all"),
    "dcl": (functools.partial(dcl, temperature=0.3), "symmetric", "all"),
    "moco_v3_infonce": (functools.partial(moco_v3_infonce, temperature=0.5), "symmetric", "positive_view"),
}


def data() -> tuple[Tensor, Tensor, Tensor]:
    """Two views' inputs (B, IN) and the images' ids in the data set."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(BATCH, IN, generator=g, dtype=torch.float64)
    return x1, x1 + 0.5 * torch.randn(BATCH, IN, generator=g, dtype=torch.float64), torch.randperm(100, generator=g)[:BATCH]


def step(name: str, rows: slice, distributed: bool) -> dict[str, Tensor]:
    """One loss and backward on the given rows of the batch: loss, inputs' and parameters' gradients."""
    loss_fn, pairs, keys = CASES[name]
    torch.manual_seed(1)
    linear = nn.Linear(IN, DIM).double()
    model: nn.Module = DistributedDataParallel(linear) if distributed else linear
    x1, x2, ids = (t[rows] for t in data())
    x1.requires_grad_(True)
    x2.requires_grad_(True)
    z1, z2 = model(torch.cat([x1, x2])).chunk(2)
    if pairs == "one_way":
        batch = PairBatch(z1, z2, ids, z2, ids)
    else:
        batch = PairBatch(torch.cat([z1, z2]), torch.cat([z2, z1]), ids.repeat(2), torch.cat([z1, z2]), ids.repeat(2), key_views=2)
    negatives = InBatchNegatives(keys).negatives(batch) if keys is not None else None  # type: ignore[arg-type]
    loss = loss_fn(batch.anchors, batch.positives, negatives)
    loss.backward()
    assert x1.grad is not None and x2.grad is not None and linear.weight.grad is not None and linear.bias.grad is not None
    return {"loss": loss.detach(), "x1": x1.grad, "x2": x2.grad, "weight": linear.weight.grad, "bias": linear.bias.grad}


def worker(rank: int, port: int, out: str) -> None:
    with gloo_process(rank, WORLD, port):
        mine = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        torch.save({name: step(name, mine, True) for name in CASES}, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("global_batch")
    spawn_within(worker, (str(out),), nprocs=WORLD, seconds=120)
    single = {name: step(name, slice(None), False) for name in CASES}
    return {"single": single, "ranks": [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]}


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_with_half_batches_compute_the_loss_and_gradients_of_the_whole_batch(runs: dict[str, Any], name: str) -> None:
    single, ranks = runs["single"][name], [r[name] for r in runs["ranks"]]
    mean_loss = sum(r["loss"] for r in ranks) / WORLD
    torch.testing.assert_close(mean_loss, single["loss"], atol=1e-5, rtol=0)
    for rank, got in enumerate(ranks):
        for param in ("weight", "bias"):  # after DDP's averaging: what the optimizer sees
            torch.testing.assert_close(got[param], single[param], atol=1e-5, rtol=0, msg=f"rank {rank} {param}")
        mine = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for view in ("x1", "x2"):
            torch.testing.assert_close(got[view], WORLD * single[view][mine], atol=1e-5, rtol=0, msg=f"rank {rank} {view}")


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("barlow_twins")])
def test_barlow_twins_is_the_global_loss_on_every_process(runs: dict[str, Any], name: str) -> None:
    for rank in runs["ranks"]:
        torch.testing.assert_close(rank[name]["loss"], runs["single"][name]["loss"], atol=1e-5, rtol=0)


def test_per_process_statistics_would_differ(runs: dict[str, Any]) -> None:
    """The check has teeth: Barlow Twins on one half alone is not the whole batch's loss."""
    half = step("barlow_twins", slice(0, BATCH // WORLD), False)
    assert abs(half["loss"].item() - runs["single"]["barlow_twins"]["loss"].item()) > 1e-2
