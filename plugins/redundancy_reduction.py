"""Losses on the batch's statistics instead of negatives: Barlow Twins and VICReg.

Both keep embeddings from collapsing by decorrelating their dimensions over the batch,
so their value depends on the whole batch, not on each anchor alone: the statistics are
taken over the *global* batch with `cmp.nn.cross_correlation` and `cmp.nn.covariance`
(gathered with their gradient; the formula itself in one process). They compare the raw,
unnormalised embeddings, need no negatives (their third argument is ignored), and are
meant for `pairs: one_way`: anchors (N, D) are one view's embeddings, positives (N, D)
the other view's, row i of both from image i. With `symmetric` pairs each side would hold
both views stacked and the statistics would be those of a mixture of the two views.
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
from cmp.nn import covariance, cross_correlation, off_diagonal
from cmp_plugins.losses import full_precision

BATCH_NORM_EPS = 1e-5
"""`nn.BatchNorm1d`'s default eps, which the Barlow Twins code's normalisation layer keeps."""


def barlow_twins(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *,
    off_diagonal_weight: NonNegative = 5e-3,
    std: Literal["batch_norm", "unbiased"] = "batch_norm",
) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views towards identity.

    anchors (N, D) and positives (N, D) are the two views' embeddings; returns a float32
    scalar (float64 stays float64). Each column is standardised over the global batch,
    C = Z_a^T Z_b / N, and

        loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2        (paper, eq. 1)

    `off_diagonal_weight` is lambda: 5e-3, the paper's value (section 4, implementation
    details; lightly's default). The authors' code (facebookresearch/barlowtwins,
    main.py) defaults to 0.0051.

    `std`: how columns are standardised. "batch_norm" (default) divides by
    sqrt(biased variance + 1e-5), as the authors' code does with
    `nn.BatchNorm1d(affine=False)` (synchronised across GPUs there, global here) and as
    lightly's `BarlowTwinsLoss` does; "unbiased" divides by `z.std(0)`
    (Bessel-corrected, no eps), as the paper's pseudo-code (Algorithm 1). Both divide C
    by N. Needs a global batch of at least 2 rows.
    """
    z_a, z_b = full_precision(anchors), full_precision(positives)
    unbiased = std == "unbiased"
    c = cross_correlation(z_a, z_b, unbiased=unbiased, eps=0.0 if unbiased else BATCH_NORM_EPS)
    on = (torch.diagonal(c) - 1).square().sum()
    return on + off_diagonal_weight * off_diagonal(c).square().sum()


def vicreg(
    anchors: Tensor, positives: Tensor, negatives: Negatives | None, *,
    invariance_weight: NonNegative = 25.0,
    variance_weight: NonNegative = 25.0,
    covariance_weight: NonNegative = 1.0,
    target_std: Positive = 1.0,
    eps: Positive = 1e-4,
    halve_variance: bool = True,
) -> Tensor:
    """VICReg (Bardes, Ponce & LeCun 2022): invariance, variance and covariance terms.

    anchors (N, D) are Z, positives (N, D) Z' (row i of both from image i); returns a
    float32 scalar (float64 stays float64). With Var the unbiased variance and C the
    unbiased covariance over the global batch:

        s(Z, Z') = mean over rows and dimensions of (z_i - z'_i)^2
        v(Z)     = 1/D sum_j max(0, gamma - sqrt(Var(z^j) + eps))
        c(Z)     = 1/D sum_{j != k} C(Z)_jk^2
        loss     = lambda s(Z, Z') + mu h [v(Z) + v(Z')] + nu [c(Z) + c(Z')]

    Defaults lambda = `invariance_weight` 25, mu = `variance_weight` 25, nu =
    `covariance_weight` 1, gamma = `target_std` 1 and eps 1e-4 are the paper's (section
    4.3; eps as in the authors' code, facebookresearch/vicreg main_vicreg.py, and lightly).
    h: the authors' code (and lightly's `VICRegLoss`) halves the variance term, h = 1/2,
    which the paper's eq. (6) does not (h = 1); `halve_variance` (default True) follows
    the code, False the paper. s is, as in that code, a mean over dimensions too, and is
    taken over this process's rows (its mean over processes is the global batch's; the
    code does the same). Needs a global batch of at least 2 rows.
    """
    z_a, z_b = full_precision(anchors), full_precision(positives)
    invariance = F.mse_loss(z_a, z_b)
    cov_a, cov_b = covariance(z_a), covariance(z_b)
    half = 0.5 if halve_variance else 1.0

    def variance(cov: Tensor) -> Tensor:
        return F.relu(target_std - torch.sqrt(torch.diagonal(cov) + eps)).mean()

    def decorrelation(cov: Tensor) -> Tensor:
        return off_diagonal(cov).square().sum() / cov.shape[0]

    return (
        invariance_weight * invariance
        + variance_weight * half * (variance(cov_a) + variance(cov_b))
        + covariance_weight * (decorrelation(cov_a) + decorrelation(cov_b))
    )


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("barlow_twins", barlow_twins, one_pair=True, min_batch=2)
    register("vicreg", vicreg, one_pair=True, min_batch=2)
