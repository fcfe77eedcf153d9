"""NT-Xent against a plain loop written from the SimCLR paper's formula."""

from __future__ import annotations

import math

import torch

from cmp.api.contracts import Negatives, PairBatch
from cmp_plugins.losses import nt_xent
from cmp_plugins.negatives import InBatchNegatives


def cosine(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def nt_xent_paper(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR Algorithm 1: mean over the 2N ordered positive pairs of
    -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), the 2N views interleaved."""
    z = [row.tolist() for pair in zip(z1, z2) for row in pair]  # z[2k], z[2k+1] are views of image k
    n2 = len(z)
    total = 0.0
    for k in range(n2 // 2):
        for i, j in ((2 * k, 2 * k + 1), (2 * k + 1, 2 * k)):
            num = math.exp(cosine(z[i], z[j]) / t)
            den = sum(math.exp(cosine(z[i], z[m]) / t) for m in range(n2) if m != i)
            total += -math.log(num / den)
    return total / n2


def simclr_batch(z1: torch.Tensor, z2: torch.Tensor) -> PairBatch:
    n = z1.shape[0]
    ids = torch.arange(n)
    return PairBatch(
        anchors=torch.cat([z1, z2]), positives=torch.cat([z2, z1]), anchor_ids=ids.repeat(2),
        keys=torch.cat([z1, z2]), key_ids=ids.repeat(2),
    )


def test_nt_xent_with_in_batch_negatives_matches_the_paper() -> None:
    g = torch.Generator().manual_seed(0)
    for n, d, t in [(4, 3, 0.5), (7, 16, 0.1), (2, 5, 1.0)]:
        z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
        z2 = torch.randn(n, d, generator=g, dtype=torch.float64)
        batch = simclr_batch(z1, z2)
        negatives = InBatchNegatives().negatives(batch)
        got = nt_xent(batch.anchors, batch.positives, negatives, temperature=t).item()
        assert math.isclose(got, nt_xent_paper(z1, z2, t), rel_tol=1e-9), (n, d, t)


def test_in_batch_negatives_are_2n_minus_2_per_anchor() -> None:
    n = 6
    batch = simclr_batch(torch.randn(n, 4), torch.randn(n, 4))
    valid = InBatchNegatives().negatives(batch).valid
    assert valid is not None
    assert valid.shape == (2 * n, 2 * n)
    assert (valid.sum(dim=1) == 2 * n - 2).all()
    for a in range(2 * n):  # never itself, never its own positive
        assert not valid[a, a % n] and not valid[a, a % n + n]


def test_nt_xent_is_lower_for_aligned_views() -> None:
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(16, 8, generator=g)
    aligned = simclr_batch(z1, z1 + 0.01 * torch.randn(16, 8, generator=g))
    random = simclr_batch(z1, torch.randn(16, 8, generator=g))
    neg = InBatchNegatives()
    low = nt_xent(aligned.anchors, aligned.positives, neg.negatives(aligned), temperature=0.2)
    high = nt_xent(random.anchors, random.positives, neg.negatives(random), temperature=0.2)
    assert low < high


def test_nt_xent_without_negatives_is_zero_and_empty_bank_too() -> None:
    a, p = torch.randn(5, 3), torch.randn(5, 3)
    assert nt_xent(a, p, None, temperature=0.1).item() == 0.0
    empty = Negatives(torch.zeros(0, 3))
    assert nt_xent(a, p, empty, temperature=0.1).item() == 0.0


def test_nt_xent_keeps_bf16_inputs_in_full_precision() -> None:
    a, p = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    loss = nt_xent(a, p, Negatives(torch.randn(6, 8).bfloat16()), temperature=0.1)
    assert loss.dtype == torch.float32


def test_nt_xent_defaults_to_the_temperature_of_its_signature() -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    batch = simclr_batch(z1, z2)
    got = nt_xent(batch.anchors, batch.positives, InBatchNegatives().negatives(batch)).item()
    assert math.isclose(got, nt_xent_paper(z1, z2, 0.1), rel_tol=1e-9)
