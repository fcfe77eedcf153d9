"""The momentum target: exact EMA, cosine schedule, no gradient, shuffled BatchNorm."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from cmp.api.contracts import Encoder, Head, PairBatch
from cmp.engine.learner import PAIRINGS, Learner, OnlineNetwork
from cmp_plugins.heads import mlp
from cmp_plugins.losses import cosine_regression, nt_xent
from cmp_plugins.momentum import MomentumTarget, cosine_momentum, momentum
from cmp_plugins.negatives import NoNegatives
from cmp_plugins.queue import QueueNegatives


class TinyEncoder(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 8)
        self.norm = nn.BatchNorm1d(8)
        self.feature_dim = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.linear(x.flatten(1))))


def unused_batch() -> PairBatch:
    """The step's embeddings, which a momentum target's update does not read."""
    keys, ids = torch.zeros(2, 4), torch.arange(2)
    return PairBatch(keys, keys, ids, keys, ids)


def online() -> OnlineNetwork:
    torch.manual_seed(0)
    return OnlineNetwork(TinyEncoder(), mlp(8, hidden_dim=8, out_dim=4))


def test_ema_update_is_exact() -> None:
    net = online()
    target = MomentumTarget(net, momentum=0.9, schedule="constant", bn_shuffle_groups=1)
    before = {n: p.detach().clone() for n, p in target.network.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    target.update(net, progress=0.5, batch=unused_batch())
    for name, p in net.named_parameters():
        expected = 0.9 * before[name] + 0.1 * p.detach()
        torch.testing.assert_close(dict(target.network.named_parameters())[name], expected)


def test_cosine_schedule_goes_from_base_to_one() -> None:
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.996, 0.25) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    target = MomentumTarget(online(), 0.99, "cosine", 1)
    target.update(online(), 0.5, unused_batch())
    assert target.stats() == {"momentum": pytest.approx(0.995)}


@pytest.mark.parametrize("method", ["moco", "byol"])
def test_no_gradient_reaches_the_target(method: str) -> None:
    net = online()
    target = MomentumTarget(net, 0.99, "cosine" if method == "byol" else "constant", 2)
    if method == "moco":
        learner = Learner(net, None, target, QueueNegatives(4, 16), functools.partial(nt_xent, temperature=0.2), PAIRINGS["one_way"], False)
        learner.negative_source.enqueue(torch.randn(16, 4))
    else:
        predictor: Head = mlp(4, hidden_dim=8, out_dim=4)
        learner = Learner(net, predictor, target, NoNegatives(), cosine_regression, PAIRINGS["symmetric"], False)
    views = [torch.randn(8, 6), torch.randn(8, 6)]
    out = learner(views)
    out.loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in target.network.parameters())
    assert all(p.grad is not None for p in net.parameters())
    assert not out.batch.positives.requires_grad
    groups = learner.param_groups()
    trained = {id(p) for g in groups for p in g["params"]}
    assert not trained & {id(p) for p in target.network.parameters()}


def test_shuffled_groups_keep_order_and_use_group_statistics() -> None:
    net = online()
    target = MomentumTarget(net, 0.99, "constant", bn_shuffle_groups=4)
    x = torch.randn(16, 6)
    target.eval()  # running statistics: grouping must not change anything but the order
    torch.testing.assert_close(target.embed(x), target.network(x))
    target.train()
    torch.manual_seed(1)
    grouped = target.embed(x)
    # the reference, by hand: the permutation torch's RNG gives, cut in 4 groups of 4 rows,
    # each group through the network alone (its own BatchNorm statistics), rows put back
    torch.manual_seed(1)
    permutation = torch.randperm(16)
    expected = torch.empty_like(grouped)
    with torch.no_grad():
        for rows in permutation.chunk(4):
            expected[rows] = target.network(x[rows])
        unshuffled = torch.cat([target.network(rows) for rows in x.chunk(4)])
    torch.testing.assert_close(grouped, expected, rtol=1e-5, atol=1e-6)
    assert (grouped - unshuffled).abs().max() > 1e-2  # the groups are the shuffled ones, not x's own order
    torch.manual_seed(1)
    torch.testing.assert_close(target.embed(x), grouped)  # the shuffle follows torch's RNG


def test_symmetric_moco_pairs_both_views_and_enqueues_both_keys() -> None:
    net = online()
    target = MomentumTarget(net, 0.99, "constant", 1)
    queue = QueueNegatives(4, 64)
    learner = Learner(net, None, target, queue, functools.partial(nt_xent, temperature=0.2), PAIRINGS["symmetric"], False)
    views = [torch.randn(8, 6), torch.randn(8, 6)]
    out = learner(views)
    assert out.batch.anchors.shape == (16, 4) and out.batch.keys.shape == (16, 4)
    with torch.no_grad():
        expected_positives = torch.cat([target.network(views[1]), target.network(views[0])])
    torch.testing.assert_close(out.batch.positives, expected_positives)
    learner.after_step(out.batch, 0.0)
    assert queue.stats() == {"queue_fill": 16 / 64}


def test_the_schedule_is_clamped_to_the_run_and_the_factory_passes_every_choice_on() -> None:
    assert cosine_momentum(0.99, 1.5) == 1.0 and cosine_momentum(0.99, -0.5) == pytest.approx(0.99)
    net = online()
    default = momentum(net, 4)
    assert (default.base, default.schedule, default.groups) == (0.99, "constant", 1)  # MoCo's m, no shuffle
    assert default.stats() == {"momentum": 0.99}  # before the first update: the base value
    chosen = momentum(net, 4, momentum=0.9, schedule="cosine", bn_shuffle_groups=3)
    assert (chosen.base, chosen.schedule, chosen.groups) == (0.9, "cosine", 3)
    chosen.update(net, 0.5, unused_batch())
    assert chosen.stats() == {"momentum": pytest.approx(0.95)}
