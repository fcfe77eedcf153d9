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

from cmp.api.contracts import (
    Encoder,
    Head,
    Negatives,
    NegativeSource,
    PairBatch,
    StatefulObjective,
    StepOutput,
    TargetBranch,
)

PAIRINGS: dict[str, list[tuple[int, int]]] = {
    "symmetric": [(0, 1), (1, 0)],
    "one_way": [(0, 1)],
}
"""Named pairings of two views: (anchor view, positive view)."""


def view_pairs(pairs: str | Sequence[Sequence[int]], num_views: int, global_views: int) -> list[tuple[int, int]]:
    """The (anchor view, positive view) pairs of a step.

    `symmetric` and `one_way` pair the first two views; `multicrop` makes every view an
    anchor of each global (large) view other than itself (SwAV, DINO: the small crops
    are anchors only); a list gives the pairs explicitly. `ValueError` for a pair that
    names a view the augmentation does not make.
    """
    if isinstance(pairs, str):
        if pairs == "multicrop":
            chosen = [(i, j) for i in range(num_views) for j in range(global_views) if i != j]
        else:
            chosen = PAIRINGS[pairs]
    else:
        chosen = [(int(i), int(j)) for i, j in pairs]
    if not chosen:
        raise ValueError("no pair of views: the step needs at least one (anchor, positive) pair")
    for i, j in chosen:
        if max(i, j) >= num_views:
            raise ValueError(f"pair ({i}, {j}) names view {max(i, j)}, but the augmentation makes {num_views} views")
    return chosen

LossFn = Callable[[Tensor, Tensor, "Negatives | None"], Tensor]


class ProgressClock(nn.Module):
    """The finished fraction of training, kept for the parts whose step depends on it (an
    objective's schedules, parameters frozen for a while) and saved with the learner's
    state so that a resumed run reads what the uninterrupted one would. A plain float
    (the module's extra state), not a buffer: exact, on no device, untouched by DDP."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = 0.0

    def get_extra_state(self) -> dict[str, float]:
        return {"progress": self.progress}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.progress = float(state["progress"])


class OnlineNetwork(nn.Module):
    """Encoder f then projection head g: images -> z. Momentum targets copy this module."""

    def __init__(self, encoder: Encoder, head: Head) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images))


@dataclass
class Embeddings:
    """The online network's outputs of one step: z per view it embeds, p per anchor view
    (the predictor's output; `p is z` without a predictor)."""

    z: dict[int, Tensor]
    p: dict[int, Tensor]


class Learner(nn.Module):
    """Online network, optional predictor, target branch and negative source, with a loss
    function or a stateful objective.

    `forward(views)` computes the loss of one step; `after_step(batch, progress)` lets the
    target, the negative source and the objective update themselves once the optimizer
    has stepped. With `joint_forward` the views go through the online network as one batch
    (BatchNorm statistics over all views, as SimCLR); otherwise one view at a time (MoCo,
    BYOL). An objective is a submodule: its parameters are trained, its buffers saved.
    Modules that define `frozen_parameters(progress)` have those parameters' gradients
    dropped before each optimizer step (`cancel_frozen_gradients`).
    """

    def __init__(
        self,
        online: OnlineNetwork,
        predictor: Head | None,
        target: TargetBranch,
        negative_source: NegativeSource,
        loss: LossFn | None,
        pairs: Sequence[tuple[int, int]],
        joint_forward: bool,
        objective: StatefulObjective | None = None,
    ) -> None:
        super().__init__()
        if (loss is None) == (objective is None):
            raise ValueError("a learner takes a loss function or an objective, exactly one")
        self.online = online
        self.predictor = predictor
        self.target = target
        self.negative_source = negative_source
        self.loss = loss
        self.objective = objective
        declared = (getattr(m, "frozen_parameters", None) for m in self.modules())
        self.freezing: list[Callable[[float], Sequence[Tensor]]] = [f for f in declared if callable(f)]
        if objective is not None or self.freezing:
            self.clock = ProgressClock()
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
        return self.online.encoder

    def _through(self, module: nn.Module, inputs: dict[int, Tensor], order: Sequence[int]) -> dict[int, Tensor]:
        """Each view through `module`; with `joint_forward`, views of one shape as one batch."""
        if not self.joint_forward or len(order) < 2:
            return {v: module(inputs[v]) for v in order}
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for v in order:
            by_shape.setdefault(tuple(inputs[v].shape[1:]), []).append(v)
        out: dict[int, Tensor] = {}
        for group in by_shape.values():
            joined = module(torch.cat([inputs[v] for v in group])) if len(group) > 1 else module(inputs[group[0]])
            out.update(zip(group, joined.split([inputs[v].shape[0] for v in group])))
        return out

    def embed(self, views: Sequence[Tensor]) -> Embeddings:
        """The online network's outputs z of the views it needs, and the predictor's p."""
        z = self._through(self.online, dict(enumerate(views)), self.online_views)
        p = self._through(self.predictor, z, self.anchor_views) if self.predictor is not None else z
        return Embeddings(z, p)

    def target_positives(self, views: Sequence[Tensor], online: dict[int, Tensor]) -> dict[int, Tensor]:
        """The target branch's embedding of every positive view."""
        return self.target.positives(views, self.positive_views, online)

    def assemble(
        self, views: Sequence[Tensor], ids: Tensor, embeddings: Embeddings, targets: dict[int, Tensor] | None = None,
    ) -> StepOutput:
        """Pairs, negatives and the loss from the step's embeddings (and positives, if given)."""
        if targets is None:
            targets = self.target_positives(views, embeddings.z)
        batch = PairBatch(
            anchors=torch.cat([embeddings.p[i] for i, _ in self.pairs]),
            positives=torch.cat([targets[j] for _, j in self.pairs]),
            anchor_ids=ids.repeat(len(self.pairs)),
            keys=torch.cat([targets[v] for v in self.positive_views]),
            key_ids=ids.repeat(len(self.positive_views)),
            key_views=len(self.positive_views),
            pairs=tuple(self.pairs),
        )
        if self.objective is not None:
            return StepOutput(self.objective(batch, self.progress), batch)
        assert self.loss is not None
        loss = self.loss(batch.anchors, batch.positives, self.negative_source.negatives(batch))
        return StepOutput(loss, batch)

    @property
    def progress(self) -> float:
        """The finished fraction of training before the coming step (0 without a clock)."""
        clock = getattr(self, "clock", None)
        return clock.progress if clock is not None else 0.0

    def forward(self, views: Sequence[Tensor], ids: Tensor | None = None, embed_only: bool = False) -> Any:
        """The loss of one step (`StepOutput`); `ids` (N,) are the images' indices in the data set.

        With `embed_only`, only the online embeddings (`Embeddings`): gradient caching
        calls this through DistributedDataParallel for its chunked passes.
        """
        if embed_only:
            return self.embed(views)
        if ids is None:
            ids = torch.arange(views[0].shape[0], device=views[0].device)
        return self.assemble(views, ids, self.embed(views))

    @torch.no_grad()
    def after_step(self, batch: PairBatch | None, progress: float) -> None:
        """Target update (EMA), negative source update (enqueue), objective update."""
        assert batch is not None
        self.target.update(self.online, progress, batch)
        self.negative_source.update(batch)
        if self.objective is not None:
            self.objective.update(batch, progress)
        if hasattr(self, "clock"):
            self.clock.progress = progress

    def stats(self) -> dict[str, float]:
        objective = self.objective.stats() if self.objective is not None else {}
        return {**self.target.stats(), **self.negative_source.stats(), **objective}

    def drop_frozen_gradients(self) -> None:
        """Drop (set to None) the gradients of the parameters frozen at this progress, so
        the optimizer leaves them untouched: no step, no weight decay, no momentum."""
        for frozen_parameters in self.freezing:
            for param in frozen_parameters(self.progress):
                param.grad = None

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self)


def cancel_frozen_gradients(optimizer: torch.optim.Optimizer, learner: Learner) -> None:
    """Before each step of `optimizer`, the learner's frozen parameters lose their gradient
    (after backward and DDP's averaging, as SwAV's and DINO's code cancel theirs)."""
    if learner.freezing:
        optimizer.register_step_pre_hook(lambda *_: learner.drop_frozen_gradients())


def param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Trainable parameters in optimizer groups; biases and norm-layer weights (ndim <= 1)
    flagged `exclude_from_decay`.

    A submodule that declares `param_group_options` (a dict, such as SimSiam's predictor's
    `{"fixed_lr": True}`) puts its parameters in groups of their own carrying those
    options, the innermost declaring module winning; optimizers keep them in their groups
    and schedules read them (docs/plugin-reference.md, "Parameter-group options"). The first group
    is always the decayed parameters without options, whose lr the trainer logs.
    """
    options_of: dict[int, dict[str, Any]] = {}
    for sub in module.modules():  # parents before children: a child's options replace its parent's
        options = getattr(sub, "param_group_options", None)
        if options:
            options_of.update({id(p): dict(options) for p in sub.parameters()})
    groups: dict[tuple[str, bool], dict[str, Any]] = {("[]", False): {"params": []}}
    for param in module.parameters():
        if not param.requires_grad:
            continue
        options = options_of.get(id(param), {})
        excluded = param.ndim <= 1
        key = (repr(sorted(options.items())), excluded)
        if key not in groups:
            groups[key] = {"params": [], **options, **({"exclude_from_decay": True} if excluded else {})}
        groups[key]["params"].append(param)
    return [g for i, g in enumerate(groups.values()) if i == 0 or g["params"]]
