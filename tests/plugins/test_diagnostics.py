"""Representation diagnostics against plain-loop references of the papers' formulas, and
the test views `evaluate_representation` computes for evaluators that ask for them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cmp.api.contracts import Augmentation, DataInfo, Features
from cmp.evaluation.features import evaluate_representation, extract_view_features
from cmp.evaluation.splits import VIEW_IMAGES, LabelledSplits, view_subset
from cmp_plugins.augmentations import simclr
from cmp_plugins.diagnostics import alignment, collapse, diagnostics, rankme, spread_rows, uniformity
from cmp_plugins.evaluators import knn


def gaussian(n: int, d: int, seed: int) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def unit(row: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in row))
    return [v / norm for v in row]


def alignment_reference(a: Tensor, b: Tensor) -> float:
    """Wang & Isola: mean over positive pairs of ||f(x) - f(x+)||^2, f on the unit sphere."""
    total = 0.0
    for u, v in zip(a.tolist(), b.tolist()):
        total += sum((p - q) ** 2 for p, q in zip(unit(u), unit(v)))
    return total / a.shape[0]


def uniformity_reference(x: Tensor, t: float = 2.0) -> float:
    """Wang & Isola: log of the mean over pairs i < j of exp(-t ||f(x_i) - f(x_j)||^2)."""
    rows = [unit(r) for r in x.tolist()]
    terms = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            terms.append(math.exp(-t * sum((p - q) ** 2 for p, q in zip(rows[i], rows[j]))))
    return math.log(sum(terms) / len(terms))


def rankme_reference(x: Tensor, eps: float = 1e-7) -> float:
    """Garrido et al.: p_k = sigma_k / ||sigma||_1 + eps, exp(-sum p_k log p_k)."""
    sigma = np.linalg.svd(x.double().numpy(), compute_uv=False)
    p = sigma / sigma.sum() + eps
    return float(np.exp(-sum(pk * math.log(pk) for pk in p)))


def collapse_reference(x: Tensor) -> float:
    """SimSiam: per-dimension population std of the normalised rows, averaged, times sqrt(d)."""
    rows = [unit(r) for r in x.tolist()]
    n, d = len(rows), len(rows[0])
    stds = []
    for k in range(d):
        column = [r[k] for r in rows]
        mean = sum(column) / n
        stds.append(math.sqrt(sum((c - mean) ** 2 for c in column) / n))
    return sum(stds) / d * math.sqrt(d)


def test_alignment_matches_the_formula() -> None:
    a, b = gaussian(50, 7, seed=0), gaussian(50, 7, seed=1)
    near = a + 0.3 * b
    assert alignment(a, b).item() == pytest.approx(alignment_reference(a, b), rel=1e-12)
    assert alignment(a, near).item() == pytest.approx(alignment_reference(a, near), rel=1e-12)


def test_alignment_of_identical_and_opposite_views() -> None:
    a = gaussian(20, 5, seed=2)
    assert alignment(a, a).item() == 0.0
    assert alignment(a, 3 * a).item() == pytest.approx(0.0, abs=1e-12)
    assert alignment(a, -a).item() == pytest.approx(4.0, rel=1e-12)


def test_uniformity_matches_the_formula() -> None:
    x = gaussian(60, 6, seed=3) + torch.tensor([2.0, 0, 0, 0, 0, 0])  # not centred: not near -4
    assert uniformity(x).item() == pytest.approx(uniformity_reference(x), rel=1e-12)
    assert uniformity(x, t=0.5).item() == pytest.approx(uniformity_reference(x, 0.5), rel=1e-12)


def test_uniformity_of_one_point_is_zero_and_of_a_spread_sphere_near_minus_four() -> None:
    assert uniformity(torch.ones(30, 4)).item() == pytest.approx(0.0, abs=1e-12)
    assert uniformity(gaussian(1000, 256, seed=4)).item() == pytest.approx(-4.0, abs=0.05)


def test_rankme_matches_the_formula() -> None:
    x = gaussian(80, 12, seed=5) * torch.linspace(0.1, 3.0, 12)
    assert rankme(x).item() == pytest.approx(rankme_reference(x), rel=1e-10)


def test_rankme_of_known_ranks() -> None:
    q, _ = torch.linalg.qr(gaussian(200, 32, seed=6).double())
    rank3 = q[:, :3] @ torch.linalg.qr(gaussian(32, 3, seed=7).double())[0].T  # three singular values of 1
    assert rankme(rank3).item() == pytest.approx(3.0, rel=1e-4)
    assert rankme(torch.eye(64)).item() == pytest.approx(64.0, rel=1e-4)
    assert 15.0 < rankme(gaussian(5000, 16, seed=8)).item() < 16.0
    assert rankme(torch.ones(100, 16)).item() == pytest.approx(1.0, rel=1e-4)


def test_collapse_matches_the_formula_and_stays_in_zero_one() -> None:
    x = gaussian(40, 9, seed=9) + 0.5
    assert collapse(x).item() == pytest.approx(collapse_reference(x), rel=1e-12)
    assert 0.0 < collapse(x).item() < 1.0


def test_collapse_of_identical_rows_is_zero_and_of_gaussian_rows_near_one() -> None:
    row = gaussian(1, 16, seed=10)
    assert collapse(row.repeat(100, 1)).item() == pytest.approx(0.0, abs=1e-12)
    assert collapse(gaussian(20000, 32, seed=11)).item() == pytest.approx(1.0, abs=0.02)


def test_spread_rows_is_a_fixed_subset_over_the_whole_split() -> None:
    assert spread_rows(5, 10).tolist() == [0, 1, 2, 3, 4]
    rows = spread_rows(10_000, 2000)
    assert len(set(rows.tolist())) == 2000 and rows[0] == 0 and rows[-1] == 9999
    # exact for any split size: 2**25 + 2 is not a float32, so a float32 grid would miss the last row
    assert spread_rows(2**25 + 3, 3).tolist() == [0, 2**24 + 1, 2**25 + 2]
    assert diagnostics().uniformity_rows == 2000  # the documented default


def test_evaluator_reports_every_metric_on_the_test_features() -> None:
    x, y = gaussian(300, 8, seed=12), torch.zeros(300, dtype=torch.long)
    a, b = gaussian(40, 8, seed=13), gaussian(40, 8, seed=14)
    evaluator = diagnostics(uniformity_rows=100)
    assert evaluator.needs_views
    result = evaluator(Features(x[:10], y[:10], 1), Features(x, y, 1, views=(a, b)))
    rows = spread_rows(300, 100)
    assert result == {
        "uniformity": pytest.approx(uniformity_reference(x[rows]), rel=1e-12),
        "rankme": pytest.approx(rankme_reference(x), rel=1e-10),
        "collapse": pytest.approx(collapse_reference(x), rel=1e-12),
        "alignment": pytest.approx(alignment_reference(a, b), rel=1e-12),
    }
    assert set(evaluator(Features(x, y, 1), Features(x, y, 1))) == {"uniformity", "rankme", "collapse"}


class Counting(Augmentation):
    """An augmentation that counts its calls."""

    def __init__(self, inner: Augmentation) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, images: Tensor, generator: torch.Generator) -> list[Tensor]:
        self.calls += 1
        return self.inner(images, generator)

    def preprocess(self, images: Tensor) -> Tensor:
        return self.inner.preprocess(images)


def tiny_setup() -> tuple[nn.Module, Counting, LabelledSplits]:
    g = torch.Generator().manual_seed(15)
    info = DataInfo("tiny", 1, 16, 16, 3, (0.5,), (0.25,))
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(256, 8))
    torch.nn.init.normal_(encoder[1].weight, generator=g)
    images = torch.randint(0, 256, (90, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (90,), generator=g)
    splits = LabelledSplits(images[:60], labels[:60], images[60:], labels[60:], 3)
    return encoder, Counting(simclr(info)), splits


def test_evaluate_representation_computes_views_only_when_asked_and_repeatably() -> None:
    encoder, augmentation, splits = tiny_setup()
    encoder.train()

    def evaluate(evaluators: dict, with_augmentation: bool = True) -> dict[str, float]:
        return evaluate_representation(encoder, augmentation.preprocess, splits, evaluators,
                                       augmentation=augmentation if with_augmentation else None)

    assert set(evaluate({"knn": knn(k=5)})) == {"knn_top1"}
    assert augmentation.calls == 0
    first = evaluate({"knn": knn(k=5), "diagnostics": diagnostics()})
    assert augmentation.calls == 1
    assert set(first) == {"knn_top1", *(f"diagnostics_{m}" for m in ("alignment", "uniformity", "rankme", "collapse"))}
    assert evaluate({"knn": knn(k=5), "diagnostics": diagnostics()}) == first
    assert encoder.training
    without = evaluate({"diagnostics": diagnostics()}, with_augmentation=False)
    assert augmentation.calls == 2 and "diagnostics_alignment" not in without
    assert without["diagnostics_rankme"] == first["diagnostics_rankme"]


def test_views_are_a_seeded_subset_with_the_same_draws_in_any_share() -> None:
    encoder, augmentation, splits = tiny_setup()
    images = splits.test_images
    subset = view_subset(10_000)
    assert subset.tolist() == view_subset(10_000).tolist() and len(subset) == VIEW_IMAGES
    assert subset.tolist() == sorted(set(subset.tolist()))
    assert view_subset(30).tolist() == list(range(30))
    whole = extract_view_features(encoder, augmentation, images, batch_size=8)
    assert whole[0].shape == (30, 8) and not torch.equal(whole[0], whole[1])
    shares = [extract_view_features(encoder, augmentation, images, rows, batch_size=8)
              for rows in (slice(0, 11), slice(11, 21), slice(21, 30), slice(30, 30))]
    for view in (0, 1):
        torch.testing.assert_close(torch.cat([share[view] for share in shares]), whole[view], rtol=0, atol=0)
