"""Negative sources without state: in-batch negatives (SimCLR, MoCo v3, NNCLR) and none (BYOL)."""

from __future__ import annotations

from typing import Literal

import torch

from cmp import hookimpl
from cmp.api.contracts import Negatives, NegativeSource, PairBatch
from cmp.api.hookspecs import Register
from cmp.nn import gather, gather_no_grad

Keys = Literal["all", "positive_view", "anchor_view"]


class InBatchNegatives(NegativeSource):
    """Every key of this step from another image is a negative (`keys="all"`), or only those
    of the anchor's positive's view (`keys="positive_view"`), or the other anchors of its
    pair (`keys="anchor_view"`).

    "all": with SimCLR's two views and shared weights the keys are all 2N embeddings, and
    the mask leaves 2N - 2 negatives per anchor: everything but itself and its positive.

    "positive_view": each anchor's negatives are the other images' embeddings in the view
    its positive comes from: N - 1 per anchor, so that with its positive it is compared to
    the N keys of one view, as in MoCo v3 (Algorithm 1: q1 against the keys k2 only).
    The bank is then the step's positives, one chunk of N rows per pair, and an anchor's
    valid rows are those of its own pair's chunk (the engine concatenates anchors and
    positives pair by pair), other than its own image.

    "anchor_view": the same, with the step's anchors as the bank: each row's candidates are
    the other images' anchors of its pair (the other view's predictions). With a loss that
    takes the positive as the query (`nt_xent`'s `query: positive`) this is NNCLR's eq. 2:
    the support set's neighbour NN(z_i) against the predictions p_k of the other view.

    Across W processes the rows of every process are gathered (with their gradient), so
    each anchor has the 2WN - 2 (or WN - 1) negatives of the global batch, as in one process.
    """

    def __init__(self, keys: Keys = "all") -> None:
        super().__init__()
        self.keys = keys

    def negatives(self, batch: PairBatch) -> Negatives:
        if self.keys != "all":
            return self._one_view(batch, batch.positives if self.keys == "positive_view" else batch.anchors)
        keys = gather(batch.keys, batch.key_views)
        key_ids = gather_no_grad(batch.key_ids, batch.key_views)
        valid = batch.anchor_ids.unsqueeze(1) != key_ids.unsqueeze(0)
        return Negatives(keys, valid)

    def _one_view(self, batch: PairBatch, rows: torch.Tensor) -> Negatives:
        images = batch.keys.shape[0] // batch.key_views
        if images == 0 or batch.positives.shape[0] % images:
            raise ValueError(f"in_batch (keys: {self.keys}): {batch.positives.shape[0]} positive rows are not whole "
                             f"pairs of the step's {images} images")
        pairs = batch.positives.shape[0] // images
        bank = gather(rows, pairs)
        bank_ids = gather_no_grad(batch.anchor_ids, pairs)
        device = bank_ids.device
        anchor_pair = torch.arange(batch.anchors.shape[0], device=device) // images
        bank_pair = torch.arange(bank.shape[0], device=device) // (bank.shape[0] // pairs)
        same_pair = anchor_pair.unsqueeze(1) == bank_pair.unsqueeze(0)
        valid = same_pair & (batch.anchor_ids.unsqueeze(1) != bank_ids.unsqueeze(0))
        return Negatives(bank, valid)


def in_batch(dim: int, *, keys: Keys = "all") -> InBatchNegatives:
    """In-batch negatives: the other images' keys of the same step (SimCLR), of the positive's view only (MoCo v3), or the other anchors of the pair (NNCLR)."""
    return InBatchNegatives(keys)


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
