"""Gradient caching: the loss and every parameter's gradient of a step in chunks equal the
whole batch's (no BatchNorm), for SimCLR, MoCo, BYOL, SimSiam, Barlow Twins and VICReg
(whose losses are statistics of the whole batch), MoCo v3 and NNCLR; the second pass replays
the first one's random draws; a batch of 4096 trains in chunks of 256 on this machine."""

from __future__ import annotations

import contextlib
import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cmp.api.contracts import Encoder
from cmp.api.results import RunResult
from cmp.cli import main
from cmp.engine.grad_cache import cached_step
from cmp.engine.learner import Embeddings, Learner, OnlineNetwork, view_pairs
from cmp_plugins import losses
from cmp_plugins.contrastive_losses import moco_v3_infonce
from cmp_plugins.heads import mlp
from cmp_plugins.momentum import momentum
from cmp_plugins.negatives import in_batch, none
from cmp_plugins.queue import queue
from cmp_plugins.redundancy_reduction import barlow_twins, vicreg
from cmp_plugins.regression_losses import negative_cosine
from cmp_plugins.targets import nearest_neighbour, shared


class SmallEncoder(Encoder):
    """Flatten, linear, ReLU, optional dropout: no BatchNorm."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.feature_dim = 12
        self.linear = nn.Linear(2 * 4 * 4, 12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.linear(x.flatten(1))))


def learner_for(method: str, dropout: float = 0.0) -> Learner:
    torch.manual_seed(0)
    online = OnlineNetwork(SmallEncoder(dropout), mlp(12, hidden_dim=16, out_dim=8, batch_norm=False))
    if method == "simclr":
        return Learner(online, None, shared(online, 8), in_batch(8), functools.partial(losses.nt_xent, temperature=0.2),
                       view_pairs("symmetric", 2, 2), True)
    if method.startswith("moco"):
        pairs = "symmetric" if method == "moco-symmetric" else "one_way"
        learner = Learner(online, None, momentum(online, 8, momentum=0.9), queue(8, size=48),
                          functools.partial(losses.nt_xent, temperature=0.2), view_pairs(pairs, 2, 2), False)
        learner.negative_source.enqueue(torch.randn(20, 8, generator=torch.Generator().manual_seed(5)))
        return learner
    if method == "byol":
        predictor = mlp(8, hidden_dim=16, out_dim=8, batch_norm=False)
        return Learner(online, predictor, momentum(online, 8, schedule="cosine"), none(8), losses.cosine_regression,
                       view_pairs("symmetric", 2, 2), False)
    if method == "moco_v3":
        predictor = mlp(8, hidden_dim=16, out_dim=8, batch_norm=False)
        return Learner(online, predictor, momentum(online, 8, momentum=0.9, schedule="cosine"),
                       in_batch(8, keys="positive_view"), functools.partial(moco_v3_infonce, temperature=0.2),
                       view_pairs("symmetric", 2, 2), False)
    if method == "nnclr":
        predictor = mlp(8, hidden_dim=16, out_dim=8, batch_norm=False)
        target = nearest_neighbour(online, 8, size=64)
        target.support.push(torch.randn(40, 8, generator=torch.Generator().manual_seed(5)))
        return Learner(online, predictor, target, in_batch(8, keys="anchor_view"),
                       functools.partial(losses.nt_xent, temperature=0.1, query="positive"),
                       view_pairs("symmetric", 2, 2), True)
    if method == "simsiam":
        predictor = mlp(8, hidden_dim=4, out_dim=8, batch_norm=False, fixed_lr=True)
        return Learner(online, predictor, shared(online, 8, stop_gradient=True), none(8), negative_cosine,
                       view_pairs("symmetric", 2, 2), False)
    loss = {"barlow_twins": barlow_twins, "vicreg": vicreg}[method]
    return Learner(online, None, shared(online, 8), none(8), loss, view_pairs("one_way", 2, 2), False)


def inputs(batch: int = 32) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 2, 4, 4, generator=g) for _ in range(2)], torch.randperm(500, generator=g)[:batch]


def gradients(learner: Learner) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}


def no_autocast() -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@pytest.mark.parametrize("method", ["simclr", "moco-one_way", "moco-symmetric", "byol", "simsiam", "barlow_twins", "vicreg",
                                    "moco_v3", "nnclr"])
@pytest.mark.parametrize("micro", [8, 5, 32])
def test_chunked_loss_and_gradients_equal_the_whole_batch(method: str, micro: int) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        views, ids = inputs()
        whole = learner_for(method)
        want = whole(views, ids)
        want.loss.backward()
        chunked = learner_for(method)
        got = cached_step(chunked, chunked, views, ids, micro, no_autocast, lambda loss: loss)
    finally:
        torch.set_default_dtype(torch.float32)
    assert got.loss.item() == pytest.approx(want.loss.item(), abs=1e-10)
    want_grads, got_grads = gradients(whole), gradients(chunked)
    assert want_grads.keys() == got_grads.keys() and want_grads
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=0, msg=name)
    assert got.batch is not None and want.batch is not None
    torch.testing.assert_close(got.batch.keys.detach(), want.batch.keys.detach())


def test_in_chunks_nnclr_stores_the_whole_batchs_embeddings_in_its_support_set() -> None:
    views, ids = inputs()
    whole, chunked = learner_for("nnclr"), learner_for("nnclr")
    want = whole(views, ids)
    got = cached_step(chunked, chunked, views, ids, 8, no_autocast, lambda loss: loss)
    whole.after_step(want.batch, 0.5)
    chunked.after_step(got.batch, 0.5)
    assert chunked.target.support.count == whole.target.support.count == 64  # 40 + 32 rows: wrapped
    torch.testing.assert_close(chunked.target.support.values(), whole.target.support.values(), atol=1e-6, rtol=0)


def test_the_second_pass_replays_the_first_passs_dropout() -> None:
    """Reference: the same chunks, one after another from the same random state, kept in
    one autograd graph. It equals gradient caching only if pass 2 draws pass 1's masks."""
    views, ids = inputs()
    reference = learner_for("simclr", dropout=0.3)
    torch.manual_seed(7)
    parts = [reference.embed([v[c] for v in views]) for c in (slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32))]
    z = {v: torch.cat([p.z[v] for p in parts]) for v in parts[0].z}
    out = reference.assemble(views, ids, Embeddings(z, z))
    out.loss.backward()
    after_reference = torch.rand(1)

    cached = learner_for("simclr", dropout=0.3)
    torch.manual_seed(7)
    got = cached_step(cached, cached, views, ids, 8, no_autocast, lambda loss: loss)
    assert got.loss.item() == pytest.approx(out.loss.item(), abs=1e-6)
    for name, grad in gradients(reference).items():
        torch.testing.assert_close(gradients(cached)[name], grad, atol=1e-5, rtol=0, msg=name)
    assert torch.equal(torch.rand(1), after_reference)  # the random stream goes on as after one pass


def test_batchnorm_running_statistics_move_once_per_chunk() -> None:
    torch.manual_seed(0)
    online = OnlineNetwork(SmallEncoder(), mlp(12, hidden_dim=16, out_dim=8, batch_norm=True))
    learner = Learner(online, None, shared(online, 8), in_batch(8), losses.nt_xent, view_pairs("symmetric", 2, 2), True)
    norm = next(m for m in learner.modules() if isinstance(m, nn.BatchNorm1d))
    views, ids = inputs()
    expected = norm.running_mean.clone()
    with torch.no_grad():  # what the first pass does, by hand: one update per chunk of 8 (both views)
        for c in (slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32)):
            h = torch.cat([online.encoder(v[c]) for v in views])
            first = online.head.net[0](h)
            expected = 0.9 * expected + 0.1 * first.mean(dim=0)
    cached_step(learner, learner, views, ids, 8, no_autocast, lambda loss: loss)
    torch.testing.assert_close(norm.running_mean, expected, atol=1e-6, rtol=0)


class TargetSizes(nn.Module):
    """The target network, recording how many images each of its calls is given."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.network(x)


@pytest.mark.parametrize("method", ["moco-symmetric", "byol"])
def test_a_target_network_sees_one_chunk_at_a_time(method: str) -> None:
    """The memory of a chunk, not of the batch: the positives of MoCo's and BYOL's target
    network are computed chunk by chunk in the first pass, never over the whole batch."""
    learner = learner_for(method)
    learner.target.network = TargetSizes(learner.target.network)
    views, ids = inputs()
    cached_step(learner, learner, views, ids, 8, no_autocast, lambda loss: loss)
    assert learner.target.network.sizes == [8] * 8  # 4 chunks, each view alone, once


class Recorded:
    """A stand-in for DistributedDataParallel: the learner, with a `no_sync` that records
    which forward passes ran inside it (DDP all-reduces on backward outside `no_sync`)."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.inside = False
        self.calls: list[tuple[bool, bool]] = []  # (grad enabled, inside no_sync) per forward

    @contextlib.contextmanager
    def no_sync(self) -> Any:
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((torch.is_grad_enabled(), self.inside))
        return self.learner(*args, **kwargs)


def test_the_gradients_are_all_reduced_once_with_the_last_chunk() -> None:
    learner = learner_for("simclr")
    forward = Recorded(learner)
    views, ids = inputs()
    cached_step(learner, forward, views, ids, 5, no_autocast, lambda loss: loss)
    first, second = forward.calls[:7], forward.calls[7:]  # 32 images in chunks of 5: 7 chunks
    assert first == [(False, False)] * 7
    assert second == [(True, True)] * 6 + [(True, False)]


LARGE = """\
name: large_batch
data: {dataset: fashion_mnist, subset: 4096, test_subset: 500}
train: {epochs: 1, batch_size: 4096, micro_batch: 256, seed: 0, log_every: 1}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
  optimizer: {name: sgd, params: {lr: 0.3}}
methods:
  simclr: {preset: simclr}
eval: {knn: {k: 20}}
baselines: []
"""


def test_a_batch_of_4096_trains_in_chunks_of_256(tmp_path: Path) -> None:
    recipe = tmp_path / "large.yaml"
    recipe.write_text(LARGE)
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 0
    (path,) = (tmp_path / "runs").glob("large_batch/*/result.json")
    result = RunResult.from_json(path.read_text())
    assert result.ok and result.train is not None
    assert result.train.steps == 1 and result.train.images_seen == 4096
    assert json.loads(json.dumps(result.config))["train"]["micro_batch"] == 256
    # at initialisation NT-Xent is about log(2B - 1), the count of each anchor's candidates:
    # 9.01 with the whole batch's negatives (8.96 measured), 6.24 with only a chunk's
    assert abs(result.train.loss_per_epoch[0] - math.log(2 * 4096 - 1)) < 0.25
