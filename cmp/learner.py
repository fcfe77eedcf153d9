"""The learner: one training step composed from slot components, the same for every method.

It knows pairs of views, an online network, a target branch, a negative source and a
loss; it never knows which method these make.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cmp.contracts import Encoder, Head, Negatives, NegativeSource, PairBatch, TargetBranch

PAIRINGS: dict[str, list[tuple[int, int]]] = {
    "symmetric": [(0, 1), (1, 0)],
    "one_way": [(0, 1)],
}
"""Named pairings of two views: (anchor view, positive view)."""

LossFn = Callable[[Tensor, Tensor, "Negatives | None"], Tensor]


class OnlineNetwork(nn.Module):
    """Encoder f then projection head g: images -> z. Momentum targets copy this module."""

    def __init__(self, encoder: Encoder, head: Head) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images))


@dataclass
class StepOutput:
    """The loss of one step and the embeddings it came from."""

    loss: Tensor
    batch: PairBatch


class Learner(nn.Module):
    """Online network, optional predictor, target branch and negative source, with a loss.

    `forward(views)` computes the loss of one step; `after_step(batch, progress)` lets the
    target and the negative source update themselves once the optimizer has stepped.
    With `joint_forward` the views go through the online network as one batch (BatchNorm
    statistics over all views, as SimCLR); otherwise one view at a time (MoCo, BYOL).
    """

    def __init__(
        self,
        online: OnlineNetwork,
        predictor: Head | None,
        target: TargetBranch,
        negative_source: NegativeSource,
        loss: LossFn,
        pairs: Sequence[tuple[int, int]],
        joint_forward: bool,
    ) -> None:
        super().__init__()
        self.online = online
        self.predictor = predictor
        self.target = target
        self.negative_source = negative_source
        self.loss = loss
        self.pairs = list(pairs)
        self.joint_forward = joint_forward
        self.anchor_views = sorted({i for i, _ in self.pairs})
        self.positive_views = sorted({j for _, j in self.pairs})
        online_views = set(self.anchor_views)
        if target.uses_online:
            online_views |= set(self.positive_views)
        self.online_views = sorted(online_views)

    @property
    def encoder(self) -> Encoder:
        return self.online.encoder  # type: ignore[return-value]

    def _through(self, module: nn.Module, inputs: dict[int, Tensor], order: Sequence[int]) -> dict[int, Tensor]:
        if self.joint_forward and len(order) > 1:
            out = module(torch.cat([inputs[v] for v in order]))
            return dict(zip(order, out.split([inputs[v].shape[0] for v in order])))
        return {v: module(inputs[v]) for v in order}

    def forward(self, views: Sequence[Tensor]) -> StepOutput:
        n = views[0].shape[0]
        z = self._through(self.online, dict(enumerate(views)), self.online_views)
        p = self._through(self.predictor, z, self.anchor_views) if self.predictor is not None else z
        targets = self.target.positives(views, self.positive_views, z)
        ids = torch.arange(n, device=views[0].device)
        batch = PairBatch(
            anchors=torch.cat([p[i] for i, _ in self.pairs]),
            positives=torch.cat([targets[j] for _, j in self.pairs]),
            anchor_ids=ids.repeat(len(self.pairs)),
            keys=torch.cat([targets[v] for v in self.positive_views]),
            key_ids=ids.repeat(len(self.positive_views)),
        )
        loss = self.loss(batch.anchors, batch.positives, self.negative_source.negatives(batch))
        return StepOutput(loss, batch)

    @torch.no_grad()
    def after_step(self, batch: PairBatch, progress: float) -> None:
        """Target update (EMA), then negative source update (enqueue)."""
        self.target.update(self.online, progress)
        self.negative_source.update(batch)

    def stats(self) -> dict[str, float]:
        return {**self.target.stats(), **self.negative_source.stats()}

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self)


def param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Trainable parameters; biases and norm-layer weights (ndim <= 1) flagged for no decay."""
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups: list[dict[str, Any]] = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "exclude_from_decay": True})
    return groups
