"""A plugin module for tests (`cmp -p tests.helpers.nnclr_plugin`): nearest-neighbour hard negatives.

`nn_support` (negative source): each anchor's negatives are the k entries of a support
set of past keys nearest to it by cosine similarity, hard negatives from a memory of past
steps. It shows that a new negative mechanism needs no engine change, and that a plugin
reuses cmp's building blocks: the support set is a `cmp.nn.SupportSet` (L2-normalised
rows, the keys of every process, checkpointed with the source), the same block cmp's own
`nearest_neighbour` target (NNCLR's positives) keeps its support set in.
"""

from __future__ import annotations

from typing import Annotated

import annotated_types as at
import torch
import torch.nn.functional as F
from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import Negatives, NegativeSource, PairBatch
from cmp.api.hookspecs import Register
from cmp.api.params import PositiveInt
from cmp.nn import SupportSet

SupportSize = Annotated[int, at.Ge(1), at.Le(1 << 20)]


def cosine_to(support: SupportSet, queries: Tensor) -> Tensor:
    """(n, count) cosine similarities of (n, dim) queries to the stored (unit) entries."""
    return F.normalize(queries.detach().float(), dim=1) @ support.values().T


class NearestNeighbourNegatives(NegativeSource):
    """Negatives: the k support-set entries nearest to each anchor (all of them while fewer).

    The bank is the whole filled support set and `valid` marks each anchor's k nearest
    rows. The first step has an empty support set, hence no negatives. `update` stores
    the step's keys (the target-side embeddings of every positive view). `PairBatch` ids
    are indices in the data set, but the support set keeps no ids with its entries, so an
    anchor's own image, stored in an earlier epoch, may be among its negatives (as in a
    MoCo queue).
    """

    def __init__(self, dim: int, size: int, k: int) -> None:
        super().__init__()
        self.support = SupportSet(size, dim)
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
        self.support.push(batch.keys, batch.key_views)

    def stats(self) -> dict[str, float]:
        return {"negative_support_fill": self.support.count / self.support.size}


def nn_support(dim: int, *, size: SupportSize = 4096, k: PositiveInt = 64) -> NearestNeighbourNegatives:
    """Hard negatives: each anchor's k nearest entries of a FIFO support set of past keys."""
    return NearestNeighbourNegatives(dim, size, k)


@hookimpl
def cmp_register_negative_sources(register: Register) -> None:
    register("nn_support", nn_support)
