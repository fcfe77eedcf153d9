"""A momentum (EMA) target: a copy of the online network that owns its update (MoCo, BYOL).

After every optimizer step the copy moves toward the online weights:
    theta_t <- m theta_t + (1 - m) theta_o,
with m constant (MoCo) or on BYOL's cosine schedule from `momentum` at the first step to 1
at the last: m_k = 1 - (1 - m_base) (cos(pi k / K) + 1) / 2. The copy is run under
`torch.no_grad()` and its parameters do not require gradients, so no gradient reaches it.

BatchNorm guard: with `bn_shuffle_groups` G > 1 the key batch is shuffled and split in G
groups, each normalised with its own statistics, then put back in order: what multi-GPU
"shuffling BN" does (MoCo), in one process. The query and its key then never share batch
statistics, so the loss cannot be lowered by reading them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

import annotated_types as at
import torch
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import PairBatch, TargetBranch
from cmp.api.hookspecs import Register
from cmp.nn import forward_shuffled_across_ranks, freeze, grouped_batchnorm_forward, update_momentum, world_size

Momentum = Annotated[float, at.Ge(0), at.Lt(1)]
Groups = Annotated[int, at.Ge(1)]


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: `base` at progress 0, rising to 1 at progress 1."""
    return 1 - (1 - base) * (math.cos(math.pi * min(1.0, max(0.0, progress))) + 1) / 2


class MomentumTarget(TargetBranch):
    """An EMA copy of the online network (encoder + projection head), never trained by SGD."""

    uses_online = False

    def __init__(self, online: nn.Module, momentum: float, schedule: str, bn_shuffle_groups: int) -> None:
        super().__init__()
        self.network = freeze(copy.deepcopy(online))
        self.base = momentum
        self.schedule = schedule
        self.groups = bn_shuffle_groups
        self.current = momentum

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Target embedding of one view, with shuffled BatchNorm when G > 1: across
        processes when there are several (MoCo's shuffle-BN), else in G groups of this
        process's batch."""
        if self.groups > 1 and world_size() > 1:
            return forward_shuffled_across_ranks(self.network, x)
        return grouped_batchnorm_forward(self.network, x, self.groups)

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        return {v: self.embed(views[v]) for v in which}

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float, batch: PairBatch) -> None:
        m = cosine_momentum(self.base, progress) if self.schedule == "cosine" else self.base
        update_momentum(self.network, online, m)
        self.current = m

    def stats(self) -> dict[str, float]:
        return {"momentum": self.current}


def momentum(
    online: nn.Module, dim: int, *, momentum: Momentum = 0.99, schedule: Literal["constant", "cosine"] = "constant",
    bn_shuffle_groups: Groups = 1,
) -> MomentumTarget:
    """Momentum (EMA) copy of encoder + head: MoCo (constant m) or BYOL (cosine m -> 1)."""
    return MomentumTarget(online, momentum, schedule, bn_shuffle_groups)


@hookimpl
def cmp_register_targets(register: Register) -> None:
    register("momentum", momentum)
