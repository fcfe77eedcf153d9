"""Contrastive losses as small functions over tensors.

Each takes anchors (A, D), positives (A, D) and `Negatives` (bank (K, D), optional
(A, K) validity mask), compares L2-normalised embeddings by cosine similarity, and
returns the mean over anchors as a scalar (float32 under mixed precision).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import Negatives
from cmp.api.hookspecs import Register
from cmp.api.params import NonNegative, Positive


def full_precision(x: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (losses are computed in full precision); others unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def similarities(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Cosine similarities: positive (A,), negatives (A, K) or None, and the mask or None."""
    a = F.normalize(full_precision(anchors), dim=1)
    p = F.normalize(full_precision(positives), dim=1)
    pos = (a * p).sum(dim=1)
    if negatives is None:
        return pos, None, None
    neg = a @ F.normalize(negatives.bank.to(a.dtype), dim=1).T
    return pos, neg, negatives.valid


def nt_xent(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *, temperature: Positive = 0.1,
    query: Literal["anchor", "positive"] = "anchor",
) -> Tensor:
    """NT-Xent, SimCLR's eq. (1): -log softmax of the positive among itself and the negatives.

    l_i = -log( exp(s_ip / t) / (exp(s_ip / t) + sum_k exp(s_ik / t)) ), k over the
    anchor's valid negatives; MoCo's InfoNCE is the same with queue negatives.

    `query` is the side whose similarities the softmax runs over: the anchor (SimCLR,
    MoCo), or the positive, compared with the bank's rows (NNCLR's eq. 2, where the
    support set's neighbour NN(z_i) is the query and the other view's predictions, its
    positive p_i and the bank of `in_batch`'s `keys: anchor_view`, are the candidates).
    """
    if query == "positive":
        anchors, positives = positives, anchors
    pos, neg, valid = similarities(anchors, positives, negatives)
    logits = (pos / temperature).unsqueeze(1)
    if neg is not None:
        neg = neg / temperature
        if valid is not None:
            neg = neg.masked_fill(~valid, float("-inf"))
        logits = torch.cat([logits, neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def negative_mask(neg: Tensor, valid: Tensor | None, pos: Tensor, semi_hard: bool) -> Tensor:
    """(A, K) bool: the negatives each anchor's loss uses.

    Without mining: every valid negative. With semi-hard mining (FaceNet, as in SimCLR's
    table 2): per anchor the one most similar negative that is still less similar than
    the positive; when there is none, the least similar negative.
    """
    usable = torch.ones_like(neg, dtype=torch.bool) if valid is None else valid
    if not semi_hard or neg.shape[1] == 0:
        return usable
    below = usable & (neg < pos.unsqueeze(1))
    semi = torch.where(below, neg, torch.full_like(neg, float("-inf"))).argmax(dim=1)
    easiest = torch.where(usable, neg, torch.full_like(neg, float("inf"))).argmin(dim=1)
    choice = torch.where(below.any(dim=1), semi, easiest)
    mask = torch.zeros_like(usable)
    mask[torch.arange(neg.shape[0], device=neg.device), choice] = True
    return mask & usable


def _mean_over(values: Tensor, mask: Tensor) -> Tensor:
    """Row means of `values` over `mask` (0 for a row without any)."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1)


def nt_logistic(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *,
    temperature: Positive = 0.2, semi_hard: bool = False,
    negative_weight: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """NT-Logistic, SimCLR's table 1: -log sigma(s+ / t) - w * sum_k log sigma(-s_k / t).

    w = 1 / (number of negatives) by default ("mean"): the negative term then has the
    weight of the single positive whatever the batch or queue size, so in-batch and queue
    runs, and runs at different batch sizes, are comparable; "sum" is the formula taken
    literally, where 2N - 2 or K negatives outweigh the positive. With no negatives only
    the positive term remains.
    """
    pos, neg, valid = similarities(anchors, positives, negatives)
    loss = -F.logsigmoid(pos / temperature)
    if neg is not None:
        mask = negative_mask(neg, valid, pos, semi_hard)
        terms = -F.logsigmoid(-neg / temperature)
        if negative_weight == "mean":
            loss = loss + _mean_over(terms, mask)
        else:
            loss = loss + torch.where(mask, terms, torch.zeros_like(terms)).sum(dim=1)
    return loss.mean()


def margin_triplet(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *,
    margin: NonNegative = 0.5, semi_hard: bool = False,
) -> Tensor:
    """Margin triplet, SimCLR's table 1: max(s_k - s+ + margin, 0), averaged over negatives.

    Similarities are cosines in [-1, 1]. With `semi_hard` each anchor uses one mined
    negative (see `negative_mask`).
    """
    pos, neg, valid = similarities(anchors, positives, negatives)
    if neg is None:
        return pos.new_zeros(())
    mask = negative_mask(neg, valid, pos, semi_hard)
    hinge = (neg - pos.unsqueeze(1) + margin).clamp_min(0)
    return _mean_over(hinge, mask).mean()


def cosine_regression(anchors: Tensor, positives: Tensor, negatives: Negatives | None) -> Tensor:
    """BYOL's loss: 2 - 2 cos(p, z), mean over anchors; negatives are ignored."""
    pos, _, _ = similarities(anchors, positives, None)
    return (2 - 2 * pos).mean()


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("nt_xent", nt_xent, needs_negatives=True)
    register("nt_logistic", nt_logistic, needs_negatives=True)
    register("margin_triplet", margin_triplet, needs_negatives=True)
    register("cosine_regression", cosine_regression)
