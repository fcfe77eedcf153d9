"""The VICReg loss against a plain, loop-by-loop reading of the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from cmp_vicreg.loss import vicreg


def reference_vicreg(
    z_a: list[list[float]], z_b: list[list[float]],
    lam: float, mu: float, nu: float, gamma: float = 1.0, eps: float = 1e-4,
) -> float:
    """Eq. (6) of Bardes et al. 2022 in plain Python (invariance averaged over dimensions too)."""
    n, d = len(z_a), len(z_a[0])

    def column(z: list[list[float]], j: int) -> list[float]:
        return [z[i][j] for i in range(n)]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    def var(values: list[float]) -> float:
        m = mean(values)
        return sum((v - m) ** 2 for v in values) / (n - 1)

    def v(z: list[list[float]]) -> float:
        return sum(max(0.0, gamma - math.sqrt(var(column(z, j)) + eps)) for j in range(d)) / d

    def c(z: list[list[float]]) -> float:
        means = [mean(column(z, j)) for j in range(d)]
        total = 0.0
        for j in range(d):
            for k in range(d):
                if j != k:
                    cov = sum((z[i][j] - means[j]) * (z[i][k] - means[k]) for i in range(n)) / (n - 1)
                    total += cov**2
        return total / d

    s = sum((z_a[i][j] - z_b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    return lam * s + mu * (v(z_a) + v(z_b)) + nu * (c(z_a) + c(z_b))


@pytest.mark.parametrize(("lam", "mu", "nu"), [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (2.0, 3.0, 0.5)])
@pytest.mark.parametrize("scale", [0.1, 3.0])
def test_matches_the_papers_formula(lam: float, mu: float, nu: float, scale: float) -> None:
    g = torch.Generator().manual_seed(int(10 * lam + mu + 7 * nu + scale))
    z_a = torch.randn(7, 5, generator=g, dtype=torch.float64) * scale
    z_b = z_a + 0.3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    got = vicreg(z_a, z_b, None, invariance_weight=lam, variance_weight=mu, covariance_weight=nu)
    expected = reference_vicreg(z_a.tolist(), z_b.tolist(), lam, mu, nu)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_terms_vanish_where_they_should() -> None:
    """Identical branches cost no invariance, widely spread ones no variance; collapse costs mu."""
    z = 40 * torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    assert vicreg(z, z, None, invariance_weight=1, variance_weight=0, covariance_weight=0).item() == 0.0
    assert vicreg(z, z, None, invariance_weight=0, variance_weight=1, covariance_weight=0).item() == 0.0
    collapsed = torch.ones(8, 3)
    assert vicreg(collapsed, collapsed, None).item() == pytest.approx(25.0 * 2 * (1 - math.sqrt(1e-4)))


def test_gradients_reach_both_branches_and_bf16_inputs_are_computed_in_float32() -> None:
    z_a = torch.randn(16, 8, requires_grad=True)
    z_b = torch.randn(16, 8, requires_grad=True)
    vicreg(z_a.bfloat16(), z_b.bfloat16(), None).backward()
    assert z_a.grad is not None and z_b.grad is not None
    assert torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0 and z_b.grad.abs().sum() > 0


def test_a_single_row_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        vicreg(torch.randn(1, 4), torch.randn(1, 4), None)
