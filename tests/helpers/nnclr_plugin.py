"""A plugin module for tests (`cmp -p tests.helpers.nnclr_plugin`): NNCLR-like support sets.

Both components keep a FIFO *support set* of past embeddings (Dwibedi et al. 2021) and
show that new negative and positive mechanisms need no engine change:

- `nn_support` (negative source): each anchor's negatives are the k support-set entries
  nearest to it by cosine similarity (hard negatives from a memory of past steps);
- `nn_shared` (target branch): each positive is the support-set entry nearest to the
  online embedding of the positive view, NNCLR's "nearest neighbour as positive".

What the contracts make awkward for `nn_shared`: a target's `update(online, progress)`
never sees the step's embeddings, so the target keeps the ones `positives` received and
enqueues them in `update`; and a target's factory is not told the embedding size, so its
support set takes its width from the first embeddings (or from a checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import annotated_types as at
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp import hookimpl
from cmp.contracts import Negatives, NegativeSource, PairBatch, TargetBranch
from cmp.hookspecs import Register
from cmp.params import PositiveInt

SupportSize = Annotated[int, at.Ge(1), at.Le(1 << 20)]


class SupportSet(nn.Module):
    """A FIFO ring of L2-normalised, detached embeddings; oldest overwritten first.

    The entries, write pointer and fill count are buffers (so they are checkpointed);
    pointer and fill are mirrored as ints so no step waits on the device. With `dim`
    None the width is taken from the first `enqueue` or from a loaded state dict.
    """

    def __init__(self, size: int, dim: int | None) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("entries", torch.zeros(size, dim or 0))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._pointer = 0
        self._filled = 0
        self.register_load_state_dict_pre_hook(_take_width)
        self.register_load_state_dict_post_hook(_sync_counters)

    @property
    def count(self) -> int:
        """How many entries hold embeddings."""
        return self._filled

    def stored(self) -> Tensor:
        """(count, dim): the filled entries, in buffer order."""
        return self.entries[: self._filled]

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor) -> None:
        """Write (n, dim) embeddings at the pointer, wrapping around the end."""
        rows = F.normalize(embeddings.detach().float(), dim=1)[-self.size :]
        if self.entries.shape[1] != rows.shape[1]:
            self.entries = torch.zeros(self.size, rows.shape[1], device=rows.device)
        n = rows.shape[0]
        first = min(n, self.size - self._pointer)
        self.entries[self._pointer : self._pointer + first] = rows[:first]
        self.entries[: n - first] = rows[first:]
        self._pointer = (self._pointer + n) % self.size
        self._filled = min(self.size, self._filled + n)
        self.pointer.fill_(self._pointer)
        self.filled.fill_(self._filled)

    def similarities(self, queries: Tensor) -> Tensor:
        """(n, count) cosine similarities of (n, dim) queries to the stored entries."""
        return F.normalize(queries.detach().float(), dim=1) @ self.stored().T


def _take_width(module: SupportSet, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """A support set of unknown width takes the saved one (a known width must match)."""
    saved = state.get(prefix + "entries")
    if saved is not None and module.entries.shape[1] == 0:
        module.entries = torch.zeros_like(saved, device=module.entries.device)


def _sync_counters(module: SupportSet, incompatible: Any) -> None:
    """Mirror the loaded pointer and fill as ints."""
    module._pointer = int(module.pointer)
    module._filled = int(module.filled)


class NearestNeighbourNegatives(NegativeSource):
    """Negatives: the k support-set entries nearest to each anchor (all of them while fewer).

    The bank is the whole filled support set and `valid` marks each anchor's k nearest
    rows. The first step has an empty support set, hence no negatives. `update` enqueues
    the step's keys (the target-side embeddings of every positive view). `PairBatch` ids
    index the batch, not the data set, so an anchor's own image seen in an earlier step
    cannot be told apart and may be among its negatives (as in a MoCo queue).
    """

    def __init__(self, dim: int, size: int, k: int) -> None:
        super().__init__()
        self.support = SupportSet(size, dim)
        self.k = k

    def negatives(self, batch: PairBatch) -> Negatives:
        bank = self.support.stored()
        if self.support.count <= self.k:
            return Negatives(bank)
        nearest = self.support.similarities(batch.anchors).topk(self.k, dim=1).indices
        valid = torch.zeros(batch.anchors.shape[0], bank.shape[0], dtype=torch.bool, device=bank.device)
        valid.scatter_(1, nearest, True)
        return Negatives(bank, valid)

    @torch.no_grad()
    def update(self, batch: PairBatch) -> None:
        self.support.enqueue(batch.keys)

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
    positive views that `positives` received during the step.
    """

    uses_online = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.support = SupportSet(size, None)
        self._seen: list[Tensor] = []

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        self._seen = [online[v].detach() for v in which]
        if self.support.count == 0:
            return {v: online[v] for v in which}
        stored = self.support.stored()
        return {v: stored[self.support.similarities(online[v]).argmax(dim=1)] for v in which}

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float) -> None:
        for embeddings in self._seen:
            self.support.enqueue(embeddings)
        self._seen = []

    def stats(self) -> dict[str, float]:
        return {"positive_support_fill": self.support.count / self.support.size}


def nn_shared(online: nn.Module, *, size: SupportSize = 4096) -> NearestNeighbourTarget:
    """NNCLR-like positives: the nearest entry of a FIFO support set of past embeddings."""
    return NearestNeighbourTarget(size)


@hookimpl
def cmp_register_negative_sources(register: Register) -> None:
    register("nn_support", nn_support)


@hookimpl
def cmp_register_targets(register: Register) -> None:
    register("nn_shared", nn_shared)
