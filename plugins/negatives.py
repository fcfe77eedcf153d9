"""Negative sources without state: in-batch negatives (SimCLR) and none (BYOL)."""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.contracts import Negatives, NegativeSource, PairBatch
from cmp.api.hookspecs import Register


class InBatchNegatives(NegativeSource):
    """Every key of this step from another image is a negative.

    With SimCLR's two views and shared weights the keys are all 2N embeddings, and the
    mask leaves 2N - 2 negatives per anchor: everything but itself and its positive.
    """

    def negatives(self, batch: PairBatch) -> Negatives:
        valid = batch.anchor_ids.unsqueeze(1) != batch.key_ids.unsqueeze(0)
        return Negatives(batch.keys, valid)


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
