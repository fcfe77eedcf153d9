"""cmp's losses and lightly's on the same tensors, at matching settings: values and gradients to 1e-5.

lightly (a test dependency: `pip install -e '.[test]'`) takes the two views' embeddings
(N, D); cmp's losses take a step's anchors and positives, so each comparison builds what
the engine would hand the loss: `one_way` pairs for Barlow Twins and VICReg (anchors z_a,
positives z_b), `symmetric` pairs with in-batch negatives for DCL / DCLW (lightly
averages its two directions) and for SimSiam's symmetrised negative cosine. The
comparisons run in float32, as training does.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

try:
    from lightly.loss import BarlowTwinsLoss, DCLLoss, DCLWLoss, NegativeCosineSimilarity, VICRegLoss
except ImportError as exc:  # a missing reference must fail, not skip
    raise ImportError("tests/plugins/test_losses_match_lightly.py compares with lightly, a test dependency: "
                      "pip install -e '.[test]'") from exc

from cmp_plugins.contrastive_losses import dcl, dclw
from cmp_plugins.negatives import InBatchNegatives
from cmp_plugins.redundancy_reduction import barlow_twins, vicreg
from cmp_plugins.regression_losses import negative_cosine
from tests.plugins.test_losses import simclr_batch

# lightly's DCLW builds its (detached) weights with torch.tensor(tensor), which warns
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")


def two_views(seed: int, n: int = 16, d: int = 8, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_a = scale * torch.randn(n, d, generator=g)
    return z_a.requires_grad_(True), (z_a.detach() + 0.7 * scale * torch.randn(n, d, generator=g)).requires_grad_(True)


def assert_same(cmp_loss: Callable[[Tensor, Tensor], Tensor], lightly_loss: Callable[[Tensor, Tensor], Tensor],
                z_a: Tensor, z_b: Tensor) -> None:
    ours = cmp_loss(z_a, z_b)
    (our_a, our_b) = torch.autograd.grad(ours, (z_a, z_b))
    theirs = lightly_loss(z_a, z_b)
    (their_a, their_b) = torch.autograd.grad(theirs, (z_a, z_b))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_a, their_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_b, their_b, atol=1e-5, rtol=1e-5)


def symmetric(loss: Callable[..., Tensor], **params: float) -> Callable[[Tensor, Tensor], Tensor]:
    """cmp's loss on the PairBatch of symmetric pairs with in-batch negatives."""

    def call(z_a: Tensor, z_b: Tensor) -> Tensor:
        batch = simclr_batch(z_a, z_b)
        return loss(batch.anchors, batch.positives, InBatchNegatives().negatives(batch), **params)

    return call


@pytest.mark.parametrize("seed", range(3))
def test_negative_cosine_matches_lightly_one_way_and_symmetrised(seed: int) -> None:
    p, z = two_views(seed)
    assert_same(lambda a, b: negative_cosine(a, b, None), NegativeCosineSimilarity(), p, z)
    p2, z2 = two_views(seed + 10)
    lightly = NegativeCosineSimilarity()
    ours = negative_cosine(torch.cat([p, p2]), torch.cat([z2, z]), None)
    torch.testing.assert_close(ours, 0.5 * (lightly(p, z2) + lightly(p2, z)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("seed", "lam"), [(0, 5e-3), (1, 5e-3), (2, 0.1)])
def test_barlow_twins_matches_lightly(seed: int, lam: float) -> None:
    assert_same(lambda a, b: barlow_twins(a, b, None, off_diagonal_weight=lam), BarlowTwinsLoss(lambda_param=lam), *two_views(seed))


@pytest.mark.parametrize(("seed", "scale"), [(0, 1.0), (1, 0.3), (2, 2.0)])
def test_vicreg_matches_lightly(seed: int, scale: float) -> None:
    assert_same(lambda a, b: vicreg(a, b, None), VICRegLoss(), *two_views(seed, scale=scale))


@pytest.mark.parametrize(("seed", "t"), [(0, 0.1), (1, 0.5)])
def test_dcl_matches_lightly(seed: int, t: float) -> None:
    assert_same(symmetric(dcl, temperature=t), DCLLoss(temperature=t), *two_views(seed))


@pytest.mark.parametrize(("seed", "t", "sigma"), [(0, 0.1, 0.5), (1, 0.3, 0.2)])
def test_dclw_matches_lightly(seed: int, t: float, sigma: float) -> None:
    assert_same(symmetric(dclw, temperature=t, sigma=sigma), DCLWLoss(temperature=t, sigma=sigma), *two_views(seed))


def test_the_defaults_match_lightlys_defaults() -> None:
    z_a, z_b = two_views(5)
    assert_same(lambda a, b: barlow_twins(a, b, None), BarlowTwinsLoss(), z_a, z_b)
    assert_same(lambda a, b: vicreg(a, b, None), VICRegLoss(), z_a, z_b)
    assert_same(symmetric(dcl), DCLLoss(), z_a, z_b)
    assert_same(symmetric(dclw), DCLWLoss(), z_a, z_b)
