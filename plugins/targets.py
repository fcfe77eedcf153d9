"""Target branches whose positives come from the online network's own embeddings.

`shared`: the positives are the online outputs z of the positive views (SimCLR; with
`stop_gradient`, SimSiam's target side). `nearest_neighbour`: each of those embeddings is
replaced by its nearest neighbour in a support set of past embeddings (NNCLR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import annotated_types as at
import torch
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import PairBatch, TargetBranch
from cmp.api.hookspecs import Register
from cmp.api.params import ParamError
from cmp.nn import SupportSet

SupportSize = Annotated[int, at.Ge(1), at.Le(1 << 20)]

NNCLR_SUPPORT_SIZE = 98_304
"""NNCLR's support set for ImageNet (Dwibedi et al. 2021, section 4.1): 24 batches of 4096."""


class SharedTarget(TargetBranch):
    """Positives are the online outputs z of the positive views (SimCLR).

    With `stop_gradient` they are detached, as SimSiam does with a predictor.
    """

    uses_online = True

    def __init__(self, stop_gradient: bool) -> None:
        super().__init__()
        self.stop_gradient = stop_gradient

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        return {v: online[v].detach() if self.stop_gradient else online[v] for v in which}


def shared(online: nn.Module, dim: int, *, stop_gradient: bool = False) -> SharedTarget:
    """Shared weights: positives come from the online network itself (SimCLR)."""
    return SharedTarget(stop_gradient)


class NearestNeighbourTarget(TargetBranch):
    """NNCLR's positives (Dwibedi et al. 2021, eq. 2): NN(z, Q), the support-set entry nearest to z.

    For each positive view the online embedding z is looked up in a `cmp.nn.SupportSet`
    Q of past embeddings (L2-normalised, cosine similarity, as the paper's nearest
    neighbour of unit vectors) and its nearest entry is the positive. Entries carry no
    gradient: the gradient reaches the network through the anchors (the predictions p of
    the other view). While Q is empty, at the first step, z itself (detached) stands in:
    what Q would return for it once stored; no random initial entries.

    After each step Q receives the online embeddings of the *first* positive view that
    `positives` was given, one row per image of the global batch (gathered across
    processes, so Q is identical on every process): as solo-learn's NNCLR enqueues its
    first view's z. `batch.keys` are not what is stored: they are the neighbours this
    target returned.
    """

    uses_online = True

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.support = SupportSet(size, dim)
        self._incoming: Tensor | None = None

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        self._incoming = online[which[0]].detach()
        if self.support.count == 0:
            return {v: online[v].detach() for v in which}
        return {v: self.support.nearest(online[v]) for v in which}

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float, batch: PairBatch) -> None:
        if self._incoming is not None:
            self.support.push(self._incoming)
            self._incoming = None

    def stats(self) -> dict[str, float]:
        return {"support_fill": self.support.count / self.support.size}


def nearest_neighbour(online: nn.Module, dim: int, *, size: SupportSize = NNCLR_SUPPORT_SIZE) -> NearestNeighbourTarget:
    """NNCLR: each positive is its embedding's nearest neighbour in a FIFO support set of `size` past embeddings."""
    return NearestNeighbourTarget(dim, size)


def check_support_holds_a_batch(params: Mapping[str, Any], cell: Any) -> None:
    """At recipe load: the support set must hold at least one global batch, or a step's own
    embeddings would overwrite each other as they are stored."""
    batch = cell.train.batch_size
    if params["size"] < batch:
        raise ParamError(("size",), f"a support set of {params['size']} cannot hold one batch of {batch} "
                                    f"(train.batch_size): NNCLR needs size >= the global batch (the paper: "
                                    f"{NNCLR_SUPPORT_SIZE} for batches of 4096)")


@hookimpl
def cmp_register_targets(register: Register) -> None:
    register("shared", shared)
    register("nearest_neighbour", nearest_neighbour, check_cell=check_support_holds_a_batch)
