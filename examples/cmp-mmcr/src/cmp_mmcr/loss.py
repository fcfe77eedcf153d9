"""MMCR's loss (Yerxa, Kuang, Simoncelli and Chung, NeurIPS 2023) as a cmp loss.

Maximum Manifold Capacity Representations: each image's views are embedded on the unit
sphere, and their centroid stands for the image. Over a batch of n images with k views
each (here k = 2, the two views of a step), stacked as rows of the centroid matrix C (n, d):

    z_i^v   = f(x_i^v) / ||f(x_i^v)||                 each view on the unit sphere
    c_i     = (1/k) sum_v z_i^v                        row i of C
    loss    = -||C||_*  +  lambda (1/n) sum_i ||Z_i||_*

||.||_* is the nuclear norm, the sum of singular values. The first term rewards centroids
that spread over many directions (views of one image agreeing pulls c_i to the sphere,
images differing raises the rank), which is what keeps the embeddings from collapsing;
Z_i (k, d) holds image i's views, and the optional second term (the official code's
`lmbda`, `local_weight` here) penalises the spread of each image's own views. The
nuclear norm is taken over the global batch: with several processes the rows of every
process are gathered first (`cmp.nn.gather`, which keeps the gradient right).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cmp.api import Negatives, NonNegative
from cmp.nn import gather


def centroids(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Row i: the mean of image i's two views, each normalised to unit length: (n, d), (n, d) -> (n, d)."""
    return (F.normalize(z_a, dim=1) + F.normalize(z_b, dim=1)) / 2


def nuclear_norm(m: Tensor) -> Tensor:
    """The sum of the singular values of m (..., r, c): a scalar per matrix."""
    return torch.linalg.svdvals(m).sum(dim=-1)


def mmcr(
    anchors: Tensor,
    positives: Tensor,
    negatives: Negatives | None,
    *,
    local_weight: NonNegative = 0.0,
) -> Tensor:
    """MMCR: minus the nuclear norm of the views' centroids; no negatives needed.

    anchors (n, d) are one view's embeddings, positives (n, d) the other view's (row i of
    both comes from image i), negatives are ignored; returns a float32 scalar. The loss
    normalises the embeddings itself. Use it with `pairs: one_way`: one pair holds both
    views, and `symmetric` pairs would count every centroid twice.
    """
    z_a, z_b = gather(anchors.float()), gather(positives.float())
    loss = -nuclear_norm(centroids(z_a, z_b))
    if local_weight:
        views = torch.stack([F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)], dim=1)
        loss = loss + local_weight * nuclear_norm(views).mean()
    return loss
