"""VICReg's loss (Bardes, Ponce and LeCun, ICLR 2022) as a cmp loss.

Three terms over the two branches' embeddings Z and Z' (n rows, d dimensions):

    invariance  s(Z, Z') = mean over rows and dimensions of (z_i - z'_i)^2
    variance    v(Z)     = 1/d sum_j max(0, gamma - sqrt(Var(z^j) + eps))
    covariance  c(Z)     = 1/d sum_{j != k} C(Z)_jk^2,  C(Z) = (Z - mean)^T (Z - mean) / (n - 1)

    loss = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]        (paper, eq. 6)

The paper writes s as the mean over rows of the squared distance; the authors' code
(and this loss) also averages over the d dimensions, which is the scale the default
weights 25 / 25 / 1 were chosen for. Var is the unbiased variance, as in their code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cmp.api import Negatives, NonNegative, Positive


def invariance(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Mean squared difference of matching rows: (n, d), (n, d) -> scalar."""
    return (z_a - z_b).square().mean()


def variance(z: Tensor, target_std: float, eps: float) -> Tensor:
    """Hinge on each dimension's regularised standard deviation: (n, d) -> scalar."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(target_std - std).mean()


def covariance(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances, divided by d: (n, d) -> scalar."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.square().sum() / d


def vicreg(
    anchors: Tensor,
    positives: Tensor,
    negatives: Negatives | None,
    *,
    invariance_weight: NonNegative = 25.0,
    variance_weight: NonNegative = 25.0,
    covariance_weight: NonNegative = 1.0,
    target_std: Positive = 1.0,
    eps: Positive = 1e-4,
) -> Tensor:
    """VICReg: invariance + variance + covariance terms; no negatives needed.

    anchors (n, d) are one branch's embeddings Z, positives (n, d) the other's Z'
    (row i of both comes from the same image), negatives are ignored; returns a float32
    scalar. Unlike contrastive losses it compares raw, unnormalised embeddings: the
    variance and covariance terms are about their scale. Needs n >= 2 rows. Use it with
    `pairs: one_way`, so that Z and Z' are the two views and not both views stacked.
    """
    if anchors.shape[0] < 2:
        raise ValueError(f"vicreg needs at least 2 rows to estimate variances, got {anchors.shape[0]}")
    z_a, z_b = anchors.float(), positives.float()
    return (
        invariance_weight * invariance(z_a, z_b)
        + variance_weight * (variance(z_a, target_std, eps) + variance(z_b, target_std, eps))
        + covariance_weight * (covariance(z_a) + covariance(z_b))
    )
