"""SimSiam's negative cosine against its formula written as loops over floats."""

from __future__ import annotations

import math

import torch

from cmp_plugins.regression_losses import negative_cosine
from tests.helpers.numeric import assert_grads_close, autograd, central_differences
from tests.plugins.test_losses import cosine


def test_negative_cosine_is_minus_the_mean_cosine_and_ignores_negatives() -> None:
    g = torch.Generator().manual_seed(0)
    for n, d in [(5, 3), (1, 4), (8, 16)]:
        p, z = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
        want = -sum(cosine(u, v) for u, v in zip(p.tolist(), z.tolist())) / n
        assert math.isclose(negative_cosine(p, z, None).item(), want, rel_tol=1e-9)


def test_with_symmetric_pairs_it_is_simsiams_symmetrised_loss() -> None:
    g = torch.Generator().manual_seed(1)
    p1, p2, z1, z2 = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(4))

    def d(p: torch.Tensor, z: torch.Tensor) -> float:  # SimSiam's eq. (1), mean over the batch
        return -sum(cosine(u, v) for u, v in zip(p.tolist(), z.tolist())) / len(p)

    got = negative_cosine(torch.cat([p1, p2]), torch.cat([z2, z1]), None).item()
    assert math.isclose(got, d(p1, z2) / 2 + d(p2, z1) / 2, rel_tol=1e-9)  # eq. (2)


def test_negative_cosine_gradient_reaches_both_sides_unless_the_target_detaches() -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    got = autograd(negative_cosine(p, z, None), p, z)
    want = central_differences(lambda m: -sum(cosine(u, v) for u, v in zip(m[0], m[1])) / 4, [p.tolist(), z.tolist()])
    assert_grads_close(got, want)
    negative_cosine(p, z.detach(), None).backward()  # the stop-gradient is the target branch's
    assert z.grad is None and p.grad is not None


def test_half_precision_inputs_give_a_float32_loss() -> None:
    assert negative_cosine(torch.randn(3, 4).bfloat16(), torch.randn(3, 4).bfloat16(), None).dtype == torch.float32
