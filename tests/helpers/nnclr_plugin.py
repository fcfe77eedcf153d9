"""A plugin module for tests (`cmp -p tests.helpers.nnclr_plugin`): NNCLR-like support sets.

Both components keep a FIFO *support set* of past embeddings (Dwibedi et al. 2021) and
show that new negative and positive mechanisms need no engine change:

- `nn_support` (negative source): each anchor's negatives are the k support-set entries
  nearest to it by cosine similarity (hard negatives from a memory of past steps);
- `nn_shared` (target branch): each positive is the support-set entry nearest to the
  online embedding of the positive view, NNCLR's "nearest neighbour as positive".

Both support sets are `cmp.nn.RingBuffer`s of L2-normalised embeddings, as wide as the
`dim` their factories are told. What the contracts still make awkward for `nn_shared`: its
`update(online, progress, batch)` receives the step's `PairBatch`, but `batch.keys` are
the positives this target returned (support-set entries, once it holds any), not the
online embeddings NNCLR stores; so the target keeps the online embeddings `positives`
received and enqueues those in `update`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import annotated_types as at
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import Negatives, NegativeSource, PairBatch, TargetBranch
from cmp.api.hookspecs import Register
from cmp.api.params import PositiveInt
from cmp.nn import RingBuffer

SupportSize = Annotated[int, at.Ge(1), at.Le(1 << 20)]


def normalised(embeddings: Tensor) -> Tensor:
    """(n, dim) embeddings as detached float32 unit rows: what a support set stores and compares."""
    return F.normalize(embeddings.detach().float(), dim=1)


def cosine_to(support: RingBuffer, queries: Tensor) -> Tensor:
    """(n, count) cosine similarities of (n, dim) queries to the stored (unit) entries."""
    return normalised(queries) @ support.values().T


class NearestNeighbourNegatives(NegativeSource):
    """Negatives: the k support-set entries nearest to each anchor (all of them while fewer).

    The bank is the whole filled support set and `valid` marks each anchor's k nearest
    rows. The first step has an empty support set, hence no negatives. `update` enqueues
    the step's keys (the target-side embeddings of every positive view). `PairBatch` ids
    are indices in the data set, but the support set keeps no ids with its entries, so an
    anchor's own image, stored in an earlier epoch, may be among its negatives (as in a
    MoCo queue).
    """

    def __init__(self, dim: int, size: int, k: int) -> None:
        super().__init__()
        self.support = RingBuffer(size, dim)
        self.k = k

    def negatives(self, batch: PairBatch) -> Negatives:
        bank = self.support.values()
        if self.support.count <= self.k:
            return Negatives(bank)
        nearest = cosine_to(self.support, batch.anchors).topk(self.k, dim=1).indices
        valid = torch.zeros(batch.anchors.shape[0], bank.shape[0], dtype=torch.bool, device=bank.device)
        valid.scatter_(1, nearest, True)
        return Negatives(bank, valid)

    @torch.no_grad()
    def update(self, batch: PairBatch) -> None:
        self.support.push(normalised(batch.keys))

    def stats(self) -> dict[str, float]:
        return {"negative_support_fill": self.support.count / self.support.size}


def nn_support(dim: int, *, size: SupportSize = 4096, k: PositiveInt = 64) -> NearestNeighbourNegatives:
    """Hard negatives: each anchor's k nearest entries of a FIFO support set of past keys."""
    return NearestNeighbourNegatives(dim, size, k)


class NearestNeighbourTarget(TargetBranch):
    """Shared weights, but each positive is replaced by its nearest support-set entry.

    While the support set is empty the online embedding itself is the positive (SimCLR).
    The support entries carry no gradient, so the gradient reaches the network through
    the anchors only, as in NNCLR. `update` enqueues the online embeddings of the
    positive views that `positives` received during the step: the step's `batch.keys`
    are the positives this target returned, which are support-set entries once it holds
    any, so enqueueing them would only copy the support set into itself.
    """

    uses_online = True

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.support = RingBuffer(size, dim)
        self._online_positives: list[Tensor] = []

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        self._online_positives = [online[v].detach() for v in which]
        if self.support.count == 0:
            return {v: online[v] for v in which}
        stored = self.support.values()
        return {v: stored[cosine_to(self.support, online[v]).argmax(dim=1)] for v in which}

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float, batch: PairBatch) -> None:
        for embeddings in self._online_positives:
            self.support.push(normalised(embeddings))
        self._online_positives = []

    def stats(self) -> dict[str, float]:
        return {"positive_support_fill": self.support.count / self.support.size}


def nn_shared(online: nn.Module, dim: int, *, size: SupportSize = 4096) -> NearestNeighbourTarget:
    """NNCLR-like positives: the nearest entry of a FIFO support set of past embeddings."""
    return NearestNeighbourTarget(dim, size)


@hookimpl
def cmp_register_negative_sources(register: Register) -> None:
    register("nn_support", nn_support)


@hookimpl
def cmp_register_targets(register: Register) -> None:
    register("nn_shared", nn_shared)
