"""More contrastive losses over any negative source: DCL, DCLW, MoCo v3's scaled InfoNCE.

Like `nt_xent` (plugins/losses.py) each takes anchors (A, D), positives (A, D) and
`Negatives` (bank (K, D), optional (A, K) validity mask), so it works with in-batch
negatives, a queue or any third-party source; each compares L2-normalised embeddings by
cosine similarity and returns the mean over this process's anchors (float32 under mixed
precision, float64 stays float64).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import Negatives
from cmp.api.hookspecs import Register
from cmp.api.params import Positive
from cmp.nn import gather, gather_no_grad
from cmp_plugins.losses import nt_xent, similarities


def _decoupled(pos: Tensor, neg: Tensor | None, valid: Tensor | None, temperature: float, weight: Tensor | None) -> Tensor:
    """Mean over anchors of -w s+ / t + log sum_k exp(s_k / t), k over each anchor's valid negatives.

    An anchor without any negative (an empty queue at the first step) keeps only its
    positive term: log of an empty sum would be -inf.
    """
    positive = -pos / temperature
    if weight is not None:
        positive = positive * weight
    if neg is None or neg.shape[1] == 0:
        return positive.mean()
    logits = neg / temperature
    if valid is None:
        return (positive + torch.logsumexp(logits, dim=1)).mean()
    some = valid.any(dim=1, keepdim=True)
    logits = logits.masked_fill(~valid & some, float("-inf")).masked_fill(~some, 0.0)  # finite rows: no nan gradient
    negative = torch.where(some.squeeze(1), torch.logsumexp(logits, dim=1), torch.zeros_like(positive))
    return (positive + negative).mean()


def dcl(anchors: Tensor, positives: Tensor, negatives: Negatives | None, *, temperature: Positive = 0.1) -> Tensor:
    """Decoupled contrastive loss (Yeh et al. 2022, eq. 6 with w = 1): the positive left out of the denominator.

    l_i = -s_ip / t + log sum_k exp(s_ik / t), k over the anchor's valid negatives; with
    in-batch negatives and symmetric pairs these are SimCLR's 2N - 2 (the other images'
    views), and the mean over the 2N anchors is the paper's loss averaged over both
    views (lightly's `DCLLoss`). No code by the paper's authors was found; t = 0.1 is the
    default of raminnakhli/Decoupled-Contrastive-Learning (loss/dcl.py, the
    implementation lightly cites) and of lightly's `DCLLoss`.
    """
    pos, neg, valid = similarities(anchors, positives, negatives)
    return _decoupled(pos, neg, valid, temperature, None)


def von_mises_fisher_weights(pos: Tensor, sigma: float, *, differentiable: bool = True) -> Tensor:
    """DCLW's weights (A,): w_i = 2 - exp(s_i / sigma) / E_j[exp(s_j / sigma)], E over the global batch's anchors.

    `pos` (A,) holds this process's positive cosines; the mean runs over every anchor of
    every process (gathered), so the weights are those one process with the whole batch
    computes. `differentiable=False` returns them as constants (no autograd anywhere).
    """
    if not differentiable:
        pos = pos.detach()
    everyone = (gather(pos) if differentiable else gather_no_grad(pos)) / sigma
    log_mean = torch.logsumexp(everyone, dim=0) - math.log(everyone.shape[0])
    return 2 - torch.exp(pos / sigma - log_mean)


def dclw(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *,
    temperature: Positive = 0.1, sigma: Positive = 0.5, weight_gradient: bool = False,
) -> Tensor:
    """Weighted DCL (Yeh et al. 2022, eq. 6): DCL with the positive term weighted by a negative von Mises-Fisher kernel.

    l_i = -w_i s_ip / t + log sum_k exp(s_ik / t), with
    w_i = 2 - exp(s_ip / sigma) / E_j[exp(s_jp / sigma)] (`von_mises_fisher_weights`):
    pairs that are already close weigh less. The mean E runs over the global batch's
    anchors (all processes); with symmetric pairs the cosines of both directions are
    equal, so this is the per-view mean of the paper's and lightly's code.

    Defaults t = 0.1 and sigma = 0.5 as in raminnakhli/Decoupled-Contrastive-Learning and
    lightly's `DCLWLoss` (sigma = 0.5 is also the paper's). `weight_gradient`: False
    (default) treats the weights as constants, as lightly does (its weights come from
    detached embeddings); True differentiates through them too, as
    raminnakhli/Decoupled-Contrastive-Learning's code does. The paper's equation does not
    say which.
    """
    pos, neg, valid = similarities(anchors, positives, negatives)
    weight = von_mises_fisher_weights(pos, sigma, differentiable=weight_gradient)
    return _decoupled(pos, neg, valid, temperature, weight)


def moco_v3_infonce(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *, temperature: Positive = 1.0,
) -> Tensor:
    """MoCo v3's contrastive loss (Chen, Xie & He 2021, Algorithm 1): 2t times InfoNCE.

    ctr(q, k) = CrossEntropy(q k^T / t, labels) * 2t: each query q_i's logits are its
    cosines to the N momentum keys of the *other* view, the positive k_i and N - 1
    negatives. That is `nt_xent` times 2t with the negative source
    `in_batch` (`keys: positive_view`), which gives each anchor the keys of its
    positive's view only (not SimCLR's 2N - 2); the factor 2t offsets the 1/t that the
    logits put on the gradient. With `pairs: symmetric` cmp averages the loss over the two pairs,
    so this is (ctr(q1, k2) + ctr(q2, k1)) / 2: Algorithm 1's loss halved, as cmp's
    BYOL loss is the paper's halved too.

    t = 1.0: the default of the authors' code (facebookresearch/moco-v3, main_moco.py
    `--moco-t`), which their ResNet-50 runs use; their ViT runs set 0.2 (CONFIG.md).
    cmp's encoders are ResNets and small convnets, so the ResNet value is the default.
    """
    return 2 * temperature * nt_xent(anchors, positives, negatives, temperature=temperature)


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("dcl", dcl, needs_negatives=True)
    register("dclw", dclw, needs_negatives=True)
    register("moco_v3_infonce", moco_v3_infonce, needs_negatives=True)
