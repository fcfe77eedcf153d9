"""Representation diagnostics: alignment, uniformity, effective rank and a collapse indicator.

They judge the geometry of the encoder's representation h of the test split rather than
how well it classifies, which tells methods with the same top-1 apart and shows a
collapse (every image mapped to one point, or to a low-dimensional subspace) as it
happens when the evaluator runs during training:

- alignment (Wang & Isola, ICML 2020): how close the two views of an image land;
- uniformity (same paper): how evenly the images spread over the unit sphere;
- RankMe (Garrido et al., ICML 2023): how many dimensions the features really use;
- collapse (SimSiam, Chen & He, CVPR 2021): the spread of the normalised features.

The functions take plain tensors and compute in float64, so they are repeatable and
cheap: 10 000 x 128 features take a fraction of a second on two CPU cores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import Features
from cmp.api.hookspecs import Register
from cmp.api.params import PositiveInt
from cmp.api.results import MetricInfo

RANKME_EPS = 1e-7
"""The epsilon RankMe adds to each normalised singular value (the paper's value)."""


def alignment(a: Tensor, b: Tensor, alpha: float = 2.0) -> Tensor:
    """E ||f(x) - f(x+)||^alpha over positive pairs: rows of a (N, D) and b (N, D), L2-normalised here.

    0 when the two views of every image have the same direction, 4 (alpha = 2) at worst.
    Lower is better, but a collapsed representation is perfectly aligned too.
    """
    a, b = F.normalize(a.double(), dim=1), F.normalize(b.double(), dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean()


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """log E exp(-t ||f(x) - f(y)||^2) over the distinct pairs of rows of x (N, D), L2-normalised here.

    Computed as a log-sum-exp, so it stays finite for well spread features. Lower is
    better: about -2t for points uniform on a high-dimensional sphere (their squared
    distances are about 2), 0 when every row is the same point.
    """
    x = F.normalize(x.double(), dim=1)
    squared = torch.pdist(x).square()
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


def rankme(x: Tensor, eps: float = RANKME_EPS) -> Tensor:
    """Effective rank of x (N, D): exp of the entropy of its normalised singular values.

    p_k = sigma_k / sum(sigma) + eps; rankme = exp(-sum_k p_k log p_k), between 1 and
    min(N, D): about r for a matrix of rank r with similar singular values, min(N, D)
    for a well conditioned one. Higher is better (more dimensions in use).
    """
    sigma = torch.linalg.svdvals(x.double())
    p = sigma / sigma.sum().clamp_min(torch.finfo(torch.float64).tiny) + eps
    return torch.exp(-(p * p.log()).sum())


def collapse(x: Tensor) -> Tensor:
    """SimSiam's collapse indicator of x (N, D), in [0, 1]: mean_d std(x / ||x||)_d * sqrt(D).

    The population std over rows of each dimension of the L2-normalised features,
    averaged over dimensions and scaled by sqrt(D): about 1 for features spread like an
    isotropic Gaussian (each unit vector coordinate then has std 1/sqrt(D)), 0 when every
    row points the same way (a collapsed representation). It can be no more than 1: the
    variances of a unit vector's coordinates add up to at most 1. Higher is better.
    """
    normalised = F.normalize(x.double(), dim=1)
    return normalised.std(dim=0, correction=0).mean() * math.sqrt(x.shape[1])


def spread_rows(total: int, limit: int) -> Tensor:
    """Indices (min(total, limit),) of rows evenly spaced over `total`: a fixed subset, in any order of the split."""
    if total <= limit:
        return torch.arange(total)
    return torch.linspace(0, total - 1, limit, dtype=torch.float64).round().long()


class Diagnostics:
    """Alignment (on the test `views`), uniformity, RankMe and collapse of the test features.

    `needs_views = True` asks the engine for the test `Features.views`; when they are
    absent (a baseline, evaluated without augmentation) alignment is left out.
    """

    needs_views = True

    def __init__(self, uniformity_rows: int) -> None:
        self.uniformity_rows = uniformity_rows

    def __call__(self, train: Features, test: Features) -> dict[str, float]:
        x = test.x
        rows = spread_rows(x.shape[0], self.uniformity_rows).to(x.device)
        results = {
            "uniformity": uniformity(x[rows]).item(),
            "rankme": rankme(x).item(),
            "collapse": collapse(x).item(),
        }
        if test.views is not None:
            results["alignment"] = alignment(*test.views).item()
        return results


def diagnostics(*, uniformity_rows: PositiveInt = 2000) -> Diagnostics:
    """Alignment, uniformity (on `uniformity_rows` evenly spaced test rows), RankMe and collapse of h."""
    return Diagnostics(uniformity_rows)


@hookimpl
def cmp_register_evaluators(register: Register) -> None:
    register("diagnostics", diagnostics, during_training=True, metrics={
        "alignment": MetricInfo("alignment", percent=False, higher_is_better=False),
        "uniformity": MetricInfo("uniformity", percent=False, higher_is_better=False),
        "rankme": MetricInfo("RankMe", percent=False),
        "collapse": MetricInfo("collapse", percent=False),
    })
