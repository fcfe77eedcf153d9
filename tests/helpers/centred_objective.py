"""A stateful objective in a few lines, the plugin guide's example (docs/plugins.md,
"Stateful objectives"): DINO's loss without multi-crop, an EMA centre over every
process and a temperature warm-up over the first tenth of the budget."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cmp.api import PairBatch, Probability, Register, StatefulObjective, hookimpl
from cmp.nn import all_reduce_sum


class CentredCrossEntropy(StatefulObjective):
    def __init__(self, dim: int, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(dim))

    def forward(self, batch: PairBatch, progress: float) -> Tensor:
        temperature = 0.04 + 0.03 * min(1.0, progress / 0.1)
        target = F.softmax((batch.positives.detach().float() - self.center) / temperature, dim=1)
        return -(target * F.log_softmax(batch.anchors.float() / 0.1, dim=1)).sum(dim=1).mean()

    @torch.no_grad()
    def update(self, batch: PairBatch, progress: float) -> None:
        keys = batch.keys.float()
        total = all_reduce_sum(torch.cat([keys.sum(dim=0), keys.new_tensor([len(keys)])]))
        self.center.mul_(self.momentum).add_(total[:-1] / total[-1], alpha=1 - self.momentum)


def centred_ce(dim: int, *, momentum: Probability = 0.9) -> CentredCrossEntropy:
    """The online outputs against the target's, centred (an EMA over the global batch) and sharpened."""
    return CentredCrossEntropy(dim, momentum)


@hookimpl
def cmp_register_objectives(register: Register) -> None:
    register("centred_ce", centred_ce)
