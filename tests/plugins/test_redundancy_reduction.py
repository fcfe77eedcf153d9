"""Barlow Twins and VICReg against their formulas written as loops over floats.

Barlow Twins: the paper's Algorithm 1 (columns standardised with the unbiased std) and
the authors' code (BatchNorm1d without affine: biased variance + 1e-5). VICReg: the
authors' code (variance term halved) and the paper's eq. (6) (not halved). Values to
1e-9 in float64; gradients against central differences of the same loops.
"""

from __future__ import annotations

import math

import pytest
import torch

from cmp_plugins.redundancy_reduction import barlow_twins, vicreg
from tests.helpers.numeric import Matrix, assert_grads_close, autograd, central_differences


def standardised(z: Matrix, std: str) -> Matrix:
    """Each column less its mean over its std: BatchNorm's (biased + 1e-5) or torch.std's (n - 1)."""
    n, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        column = [z[i][j] for i in range(n)]
        mean = sum(column) / n
        squares = sum((x - mean) ** 2 for x in column)
        scale = math.sqrt(squares / n + 1e-5) if std == "batch_norm" else math.sqrt(squares / (n - 1))
        for i in range(n):
            out[i][j] = (z[i][j] - mean) / scale
    return out


def barlow_twins_reference(z_a: Matrix, z_b: Matrix, lam: float = 5e-3, std: str = "batch_norm") -> float:
    """sum_i (1 - C_ii)^2 + lam sum_{i != j} C_ij^2, C_ij = sum_k a_ki b_kj / n."""
    a, b = standardised(z_a, std), standardised(z_b, std)
    n, d = len(a), len(a[0])
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k][i] * b[k][j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def vicreg_reference(z_a: Matrix, z_b: Matrix, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0,
                     gamma: float = 1.0, eps: float = 1e-4, halve: bool = True) -> float:
    n, d = len(z_a), len(z_a[0])
    invariance = sum((z_a[i][j] - z_b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def means(z: Matrix) -> list[float]:
        return [sum(z[i][j] for i in range(n)) / n for j in range(d)]

    def variance(z: Matrix) -> float:
        m = means(z)
        stds = [math.sqrt(sum((z[i][j] - m[j]) ** 2 for i in range(n)) / (n - 1) + eps) for j in range(d)]
        return sum(max(0.0, gamma - s) for s in stds) / d

    def covariance(z: Matrix) -> float:
        m = means(z)
        total = 0.0
        for j in range(d):
            for k in range(d):
                if j != k:
                    c = sum((z[i][j] - m[j]) * (z[i][k] - m[k]) for i in range(n)) / (n - 1)
                    total += c**2
        return total / d

    h = 0.5 if halve else 1.0
    return lam * invariance + mu * h * (variance(z_a) + variance(z_b)) + nu * (covariance(z_a) + covariance(z_b))


def views(seed: int, n: int, d: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_a = scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    z_b = z_a + 0.5 * scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z_a, z_b


@pytest.mark.parametrize("std", ["batch_norm", "unbiased"])
@pytest.mark.parametrize(("n", "d", "lam"), [(5, 3, 5e-3), (8, 4, 0.5), (2, 2, 1.0)])
def test_barlow_twins_matches_the_pseudo_code_and_the_authors_normalisation(std: str, n: int, d: int, lam: float) -> None:
    z_a, z_b = views(n * d, n, d)
    got = barlow_twins(z_a, z_b, None, off_diagonal_weight=lam, std=std).item()  # type: ignore[arg-type]
    assert math.isclose(got, barlow_twins_reference(z_a.tolist(), z_b.tolist(), lam, std), rel_tol=1e-9)


@pytest.mark.parametrize("std", ["batch_norm", "unbiased"])
def test_barlow_twins_gradient_is_the_formulas(std: str) -> None:
    z_a, z_b = (z.requires_grad_(True) for z in views(3, 5, 3))
    got = autograd(barlow_twins(z_a, z_b, None, off_diagonal_weight=0.3, std=std), z_a, z_b)  # type: ignore[arg-type]
    want = central_differences(lambda m: barlow_twins_reference(m[0], m[1], 0.3, std), [z_a.tolist(), z_b.tolist()])
    assert_grads_close(got, want)


def test_barlow_twins_defaults_are_lambda_5e_3_and_batchnorm_and_the_two_stds_differ() -> None:
    z_a, z_b = views(11, 6, 4)
    lists = (z_a.tolist(), z_b.tolist())
    assert math.isclose(barlow_twins(z_a, z_b, None).item(), barlow_twins_reference(*lists, 5e-3, "batch_norm"), rel_tol=1e-9)
    unbiased = barlow_twins(z_a, z_b, None, std="unbiased").item()
    assert abs(unbiased - barlow_twins(z_a, z_b, None).item()) > 1e-3


@pytest.mark.parametrize("halve", [True, False])
@pytest.mark.parametrize(("n", "d", "scale"), [(6, 3, 1.0), (5, 4, 0.3), (3, 2, 2.0)])
def test_vicreg_matches_the_authors_code_and_the_papers_equation(halve: bool, n: int, d: int, scale: float) -> None:
    z_a, z_b = views(n + d, n, d, scale)
    got = vicreg(z_a, z_b, None, halve_variance=halve).item()
    assert math.isclose(got, vicreg_reference(z_a.tolist(), z_b.tolist(), halve=halve), rel_tol=1e-9)


def test_vicreg_weights_target_and_eps_reach_their_terms() -> None:
    z_a, z_b = views(4, 7, 3, 0.5)
    params = {"invariance_weight": 2.0, "variance_weight": 3.0, "covariance_weight": 0.7, "target_std": 1.5, "eps": 0.01}
    got = vicreg(z_a, z_b, None, **params, halve_variance=False).item()
    want = vicreg_reference(z_a.tolist(), z_b.tolist(), 2.0, 3.0, 0.7, 1.5, 0.01, halve=False)
    assert math.isclose(got, want, rel_tol=1e-9)


@pytest.mark.parametrize("halve", [True, False])
def test_vicreg_gradient_is_the_formulas(halve: bool) -> None:
    z_a, z_b = (z.requires_grad_(True) for z in views(5, 5, 3, 0.4))  # std below 1: the variance hinge is active
    got = autograd(vicreg(z_a, z_b, None, halve_variance=halve), z_a, z_b)
    want = central_differences(lambda m: vicreg_reference(m[0], m[1], halve=halve), [z_a.tolist(), z_b.tolist()])
    assert_grads_close(got, want)


@pytest.mark.parametrize("loss", [barlow_twins, vicreg])
def test_half_precision_inputs_give_a_float32_loss(loss) -> None:  # type: ignore[no-untyped-def]
    z_a, z_b = views(2, 8, 4)
    assert loss(z_a.bfloat16(), z_b.bfloat16(), None).dtype == torch.float32


@pytest.mark.parametrize("loss", [barlow_twins, vicreg])
def test_one_row_has_no_variance_and_is_refused(loss) -> None:  # type: ignore[no-untyped-def]
    z = torch.randn(1, 4)
    with pytest.raises(ValueError, match="needs at least 2 rows in the global batch, got 1"):
        loss(z, z, None)
