"""Negative sources without state: in-batch negatives (SimCLR) and none (BYOL)."""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.contracts import Negatives, NegativeSource, PairBatch
from cmp.api.hookspecs import Register
from cmp.nn import gather, gather_no_grad


class InBatchNegatives(NegativeSource):
    """Every key of this step from another image is a negative.

    With SimCLR's two views and shared weights the keys are all 2N embeddings, and the
    mask leaves 2N - 2 negatives per anchor: everything but itself and its positive.
    Across W processes the keys of every process are gathered (with their gradient), so
    each anchor has the 2WN - 2 negatives of the global batch, as in one process.
    """

    def negatives(self, batch: PairBatch) -> Negatives:
        keys = gather(batch.keys, batch.key_views)
        key_ids = gather_no_grad(batch.key_ids, batch.key_views)
        valid = batch.anchor_ids.unsqueeze(1) != key_ids.unsqueeze(0)
        return Negatives(keys, valid)


def in_batch(dim: int) -> InBatchNegatives:
    """In-batch negatives: the other images' keys of the same step (SimCLR)."""
    return InBatchNegatives()


class NoNegatives(NegativeSource):
    """No negatives at all (BYOL, SimSiam): only losses that need none can be used."""

    def negatives(self, batch: PairBatch) -> None:
        return None


def none(dim: int) -> NoNegatives:
    """No negatives (BYOL): the loss sees only anchors and positives."""
    return NoNegatives()


@hookimpl
def cmp_register_negative_sources(register: Register) -> None:
    register("in_batch", in_batch)
    register("none", none, provides_negatives=False)
