"""The learner assembles SimCLR's loss from slot components, exactly."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from cmp.api.contracts import Encoder, Head
from cmp.engine.learner import PAIRINGS, Learner, OnlineNetwork
from cmp_plugins.losses import nt_xent
from cmp_plugins.negatives import InBatchNegatives
from cmp_plugins.targets import SharedTarget
from tests.plugins.test_losses import nt_xent_paper


class Flatten(Encoder):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim
        self.scale = nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * self.scale


class Same(Head):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def simclr_learner(joint: bool) -> Learner:
    online = OnlineNetwork(Flatten(12), Same(12))
    return Learner(
        online, None, SharedTarget(stop_gradient=False), InBatchNegatives(),
        functools.partial(nt_xent, temperature=0.3), PAIRINGS["symmetric"], joint,
    )


def test_simclr_step_equals_the_paper_formula_and_reaches_the_encoder() -> None:
    g = torch.Generator().manual_seed(0)
    v1 = torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64)
    v2 = torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64)
    for joint in (True, False):
        learner = simclr_learner(joint)
        out = learner([v1, v2])
        want = nt_xent_paper(v1.flatten(1), v2.flatten(1), 0.3)
        assert math.isclose(out.loss.item(), want, rel_tol=1e-9)
        out.loss.backward()
        assert learner.online.encoder.scale.grad is not None
        assert out.batch.keys.shape == (10, 12) and out.batch.anchors.shape == (10, 12)


def test_param_groups_flag_biases_and_norms() -> None:
    online = OnlineNetwork(Flatten(4), Same(4))
    online.head = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))  # type: ignore[assignment]
    learner = Learner(online, None, SharedTarget(False), InBatchNegatives(), nt_xent, PAIRINGS["one_way"], False)
    groups = learner.param_groups()
    assert [len(g["params"]) for g in groups] == [1, 4]  # Linear weight | scale, bias, BN weight, BN bias
    assert groups[1]["exclude_from_decay"] is True


def test_a_module_with_param_group_options_gets_groups_of_its_own() -> None:
    """Options go to the declaring module's parameters (the innermost declaring module
    wins), split by decay like the rest; frozen parameters and empty groups are left out."""
    online = OnlineNetwork(Flatten(4), Same(4))
    head = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 4), nn.Linear(4, 4))
    head.param_group_options = {"fixed_lr": True}  # type: ignore[assignment]
    head[1].param_group_options = {"fixed_lr": True, "tag": "inner"}  # type: ignore[assignment]
    head[2].weight.requires_grad_(False)
    online.head = head  # type: ignore[assignment]
    learner = Learner(online, None, SharedTarget(False), InBatchNegatives(), nt_xent, PAIRINGS["one_way"], False)
    groups = learner.param_groups()
    members = [{id(p) for p in g["params"]} for g in groups]
    options = [{k: v for k, v in g.items() if k != "params"} for g in groups]
    assert options == [
        {},
        {"exclude_from_decay": True},
        {"fixed_lr": True},
        {"fixed_lr": True, "exclude_from_decay": True},
        {"fixed_lr": True, "tag": "inner"},
        {"fixed_lr": True, "tag": "inner", "exclude_from_decay": True},
    ]
    assert members == [
        set(), {id(online.encoder.scale)}, {id(head[0].weight)}, {id(head[0].bias), id(head[2].bias)},
        {id(head[1].weight)}, {id(head[1].bias)},
    ]


def test_without_options_the_first_group_is_the_decayed_one_even_when_empty() -> None:
    online = OnlineNetwork(Flatten(4), Same(4))
    learner = Learner(online, None, SharedTarget(False), InBatchNegatives(), nt_xent, PAIRINGS["one_way"], False)
    groups = learner.param_groups()
    assert [len(g["params"]) for g in groups] == [0, 1] and groups[1]["exclude_from_decay"] is True
