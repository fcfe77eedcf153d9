"""Losses that pull an anchor onto its positive with no negatives: SimSiam's negative cosine.

They need an asymmetry elsewhere to avoid collapse (a predictor and a stop-gradient on
the target side, SimSiam; a momentum target, BYOL), so the negative source is `none`
and the loss ignores its third argument. BYOL's `cosine_regression` is in
plugins/losses.py.
"""

from __future__ import annotations

from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import Negatives
from cmp.api.hookspecs import Register
from cmp_plugins.losses import similarities


def negative_cosine(anchors: Tensor, positives: Tensor, negatives: Negatives | None) -> Tensor:
    """SimSiam's D(p, z) = -cos(p, stopgrad(z)) (Chen & He 2021, eq. 1), mean over anchors.

    anchors (A, D) are the predictor's outputs p, positives (A, D) the target side's z;
    returns a float32 scalar in [-1, 1] (float64 stays float64). The stop-gradient is
    not applied here: the target branch gives positives without a gradient
    (`target: {name: shared, params: {stop_gradient: true}}`), so the same function also
    serves a target that wants one. With `pairs: symmetric` the mean over the two pairs
    is the paper's symmetrised L = D(p1, z2) / 2 + D(p2, z1) / 2 (eq. 2), the authors'
    code's `-(cos(p1, z2).mean() + cos(p2, z1).mean()) * 0.5` and lightly's
    `NegativeCosineSimilarity`.
    """
    pos, _, _ = similarities(anchors, positives, None)
    return -pos.mean()


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("negative_cosine", negative_cosine)
