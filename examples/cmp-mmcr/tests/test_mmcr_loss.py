"""The MMCR loss against the paper's formula computed with numpy, and cases known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cmp_mmcr.loss import mmcr


def reference_mmcr(z_a: np.ndarray, z_b: np.ndarray, lam: float) -> float:
    """-||C||_* + lam / n sum_i ||Z_i||_*, with numpy: views on the unit sphere, C their centroids."""
    u_a = z_a / np.linalg.norm(z_a, axis=1, keepdims=True)
    u_b = z_b / np.linalg.norm(z_b, axis=1, keepdims=True)
    centroid_term = np.linalg.svd((u_a + u_b) / 2, compute_uv=False).sum()
    local = [np.linalg.svd(np.stack([u_a[i], u_b[i]]), compute_uv=False).sum() for i in range(len(z_a))]
    return float(-centroid_term + lam * np.mean(local))


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
@pytest.mark.parametrize(("n", "d"), [(7, 5), (4, 9), (1, 3)])
def test_matches_the_papers_formula(lam: float, n: int, d: int) -> None:
    g = torch.Generator().manual_seed(n * 10 + d + int(4 * lam))
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64) * 3
    z_b = z_a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    got = mmcr(z_a, z_b, None, local_weight=lam)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(reference_mmcr(z_a.numpy(), z_b.numpy(), lam), rel=1e-5, abs=1e-5)


def test_orthogonal_images_reach_the_bound_and_collapse_does_not() -> None:
    """Views that agree and images along orthogonal axes: ||C||_* = n, the most n unit rows allow;
    every image on one direction: ||C||_* = sqrt(n), what collapse gets."""
    n = 6
    spread = torch.eye(n, 8) * torch.arange(1.0, n + 1).unsqueeze(1)  # lengths do not matter: views are normalised
    assert mmcr(spread, spread, None).item() == pytest.approx(-n)
    collapsed = torch.ones(n, 8)
    assert mmcr(collapsed, 2 * collapsed, None).item() == pytest.approx(-math.sqrt(n))


def test_gradients_reach_both_views_and_bf16_inputs_are_computed_in_float32() -> None:
    z_a = torch.randn(16, 8, requires_grad=True)
    z_b = torch.randn(16, 8, requires_grad=True)
    loss = mmcr(z_a.bfloat16(), z_b.bfloat16(), None, local_weight=0.1)
    loss.backward()
    assert loss.dtype == torch.float32
    assert z_a.grad is not None and z_b.grad is not None
    assert torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0 and z_b.grad.abs().sum() > 0
