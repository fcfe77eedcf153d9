"""SwAV and DINO learners on a tiny BatchNorm-free encoder, and multi-crop batches for them:
what the multi-process, gradient-caching and resume tests of the objectives share."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp.api.contracts import Encoder
from cmp.engine.learner import Learner, OnlineNetwork, cancel_frozen_gradients, view_pairs
from cmp_plugins.clustering import swav
from cmp_plugins.heads import dino_head, mlp
from cmp_plugins.momentum import momentum
from cmp_plugins.negatives import none
from cmp_plugins.self_distillation import dino
from cmp_plugins.targets import shared

GLOBAL, LOCAL, CHANNELS = 2, 2, 2
"""Views per step: two global 4x4 crops, two local 2x2 ones."""


class PooledEncoder(Encoder):
    """Average-pool to 2x2, flatten, linear, ReLU: any crop size, no BatchNorm, so any split
    of the batch across processes or chunks gives the same outputs."""

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        self.feature_dim = 12
        self.linear = nn.Linear(channels * 4, 12)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.linear(F.adaptive_avg_pool2d(x, 2).flatten(1)))


def build(method: str, **params: Any) -> Learner:
    """A SwAV (queue of 32, used from the third step of 16 images; prototypes frozen for the
    first 40 %) or DINO (last layer frozen for the first 40 %, temperature warm-up over half)
    learner, seeded."""
    torch.manual_seed(0)
    pairs = view_pairs("multicrop", GLOBAL + LOCAL, GLOBAL)
    if method == "swav":
        online = OnlineNetwork(PooledEncoder(), mlp(12, hidden_dim=16, out_dim=8, batch_norm=False))
        objective: Any = swav(8, **{"prototypes": 10, "queue_size": 32, "queue_start": 0.0,
                                    "freeze_prototypes_until": 0.4, **params})
        target: Any = shared(online, 8)
    else:
        online = OnlineNetwork(PooledEncoder(), dino_head(12, hidden_dim=16, bottleneck_dim=6, out_dim=10,
                                                          freeze_last_layer=0.4))
        objective = dino(10, **{"warmup": 0.5, **params})
        target = momentum(online, 10, momentum=0.9, schedule="cosine")
    return Learner(online, None, target, none(8), None, pairs, True, objective)


def optimizer_for(learner: Learner) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (so a step on a frozen parameter would show), the
    frozen parameters' gradients dropped before each step as `build_model` arranges."""
    optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.5, momentum=0.9,
                                weight_decay=1e-3)
    cancel_frozen_gradients(optimizer, learner)
    return optimizer


def batches(steps: int, batch: int) -> list[tuple[list[Tensor], Tensor]]:
    """`steps` multi-crop batches: two 4x4 views and two 2x2 views of `batch` images, with ids."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        views = [torch.randn(batch, CHANNELS, 4, 4, generator=g) for _ in range(GLOBAL)]
        views += [torch.randn(batch, CHANNELS, 2, 2, generator=g) for _ in range(LOCAL)]
        out.append((views, torch.randperm(100, generator=g)[:batch]))
    return out


def tensors(state: dict[str, Any]) -> dict[str, Tensor]:
    """The tensors of a state dict, cloned (the learner's clock is a float, not a tensor)."""
    return {k: v.detach().clone() for k, v in state.items() if isinstance(v, Tensor)}
