"""NT-Logistic, margin triplet and BYOL's regression against plain loops from their formulas;
in-batch and queue negatives agree; aligned views always cost less than random ones."""

from __future__ import annotations

import math

import pytest
import torch

from cmp.api.contracts import Negatives, PairBatch
from cmp_plugins.losses import cosine_regression, margin_triplet, negative_mask, nt_logistic, nt_xent, similarities
from cmp_plugins.negatives import InBatchNegatives
from cmp_plugins.queue import QueueNegatives
from tests.plugins.test_losses import cosine


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def negatives_of(a: int, bank: list[list[float]], valid: list[list[bool]] | None) -> list[int]:
    return [k for k in range(len(bank)) if valid is None or valid[a][k]]


def semi_hard_pick(anchor: list[float], positive: list[float], bank: list[list[float]], candidates: list[int]) -> list[int]:
    """FaceNet's semi-hard negative: the most similar one still below the positive, else the least similar."""
    s_pos = cosine(anchor, positive)
    below = [k for k in candidates if cosine(anchor, bank[k]) < s_pos]
    if below:
        return [max(below, key=lambda k: cosine(anchor, bank[k]))]
    return [min(candidates, key=lambda k: cosine(anchor, bank[k]))] if candidates else []


def reference(kind: str, anchors, positives, bank, valid, t=0.2, m=0.5, semi_hard=False, weight="mean"):  # type: ignore[no-untyped-def]
    total = 0.0
    for a, (u, v) in enumerate(zip(anchors, positives)):
        negs = negatives_of(a, bank, valid)
        if semi_hard:
            negs = semi_hard_pick(u, v, bank, negs)
        s_pos = cosine(u, v)
        if kind == "nt_logistic":
            terms = [-log_sigmoid(-cosine(u, bank[k]) / t) for k in negs]
            neg_term = sum(terms) / max(1, len(terms)) if weight == "mean" else sum(terms)
            total += -log_sigmoid(s_pos / t) + neg_term
        elif kind == "margin_triplet":
            hinges = [max(cosine(u, bank[k]) - s_pos + m, 0.0) for k in negs]
            total += sum(hinges) / max(1, len(hinges))
    return total / len(anchors)


def random_case(seed: int, a: int = 6, k: int = 9, d: int = 5, masked: bool = True):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(a, d, generator=g, dtype=torch.float64)
    positives = anchors + 0.8 * torch.randn(a, d, generator=g, dtype=torch.float64)
    bank = torch.randn(k, d, generator=g, dtype=torch.float64)
    valid = torch.rand(a, k, generator=g) > 0.3 if masked else None
    return anchors, positives, bank, valid


@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_nt_logistic_and_margin_match_their_formulas(semi_hard: bool, masked: bool) -> None:
    for seed in range(3):
        anchors, positives, bank, valid = random_case(seed, masked=masked)
        lists = (anchors.tolist(), positives.tolist(), bank.tolist(), valid.tolist() if valid is not None else None)
        negatives = Negatives(bank, valid)
        got = nt_logistic(anchors, positives, negatives, temperature=0.2, semi_hard=semi_hard).item()
        assert math.isclose(got, reference("nt_logistic", *lists, semi_hard=semi_hard), rel_tol=1e-9)
        got = margin_triplet(anchors, positives, negatives, margin=0.5, semi_hard=semi_hard).item()
        assert math.isclose(got, reference("margin_triplet", *lists, semi_hard=semi_hard), rel_tol=1e-9, abs_tol=1e-12)


def test_nt_logistic_sum_weighting_is_the_literal_formula() -> None:
    anchors, positives, bank, valid = random_case(7)
    got = nt_logistic(anchors, positives, Negatives(bank, valid), temperature=0.3, negative_weight="sum").item()
    want = reference("nt_logistic", anchors.tolist(), positives.tolist(), bank.tolist(), valid.tolist(), t=0.3, weight="sum")
    assert math.isclose(got, want, rel_tol=1e-9)


def test_cosine_regression_is_two_minus_two_cos() -> None:
    anchors, positives, _, _ = random_case(1)
    want = sum(2 - 2 * cosine(u, v) for u, v in zip(anchors.tolist(), positives.tolist())) / 6
    assert math.isclose(cosine_regression(anchors, positives, None).item(), want, rel_tol=1e-9)


@pytest.mark.parametrize("loss", [nt_xent, nt_logistic, margin_triplet])
def test_in_batch_equals_a_queue_holding_exactly_the_other_keys(loss) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    n, d = 5, 4
    queries = torch.randn(n, d, generator=g, dtype=torch.float64)
    keys = torch.randn(n, d, generator=g, dtype=torch.float64)
    ids = torch.arange(n)
    batch = PairBatch(queries, keys, ids, keys, ids)
    in_batch = loss(queries, keys, InBatchNegatives().negatives(batch)).item()
    per_anchor = []
    for i in range(n):
        queue = QueueNegatives(d, size=n - 1).double()
        queue.enqueue(torch.cat([keys[:i], keys[i + 1 :]]))
        one = PairBatch(queries[i : i + 1], keys[i : i + 1], ids[:1], keys[i : i + 1], ids[:1])
        per_anchor.append(loss(queries[i : i + 1], keys[i : i + 1], queue.negatives(one)).item())
    assert math.isclose(in_batch, sum(per_anchor) / n, rel_tol=1e-6)


@pytest.mark.parametrize("source", ["in_batch", "queue"])
@pytest.mark.parametrize("loss", [nt_xent, nt_logistic, margin_triplet, cosine_regression])
def test_aligned_views_cost_less_than_random_views(loss, source: str) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(3)
    n, d = 32, 16
    anchors = torch.randn(n, d, generator=g)
    ids = torch.arange(n)

    def value(positives: torch.Tensor) -> float:
        batch = PairBatch(anchors, positives, ids, positives, ids)
        if source == "in_batch":
            negatives = InBatchNegatives().negatives(batch)
        else:
            queue = QueueNegatives(d, size=64)
            queue.enqueue(torch.randn(64, d, generator=g))
            negatives = queue.negatives(batch)
        return loss(anchors, positives, negatives).item()

    aligned = value(anchors + 0.01 * torch.randn(n, d, generator=g))
    random = value(torch.randn(n, d, generator=g))
    assert aligned < random


def test_semi_hard_mining_on_a_hand_made_case() -> None:
    """Anchors (1, 0) and 2-D rows whose cosines to them are exact: 0.6, 0.8, 0, -1.

    Row 0: positive at 0.6; a negative *tied* with it is not below it, so the pick is the
    one at 0. Row 1: positive at -1 and the -1 negative masked out: none below, so the
    least similar valid one (0). Row 2: positive at 0.8: the pick is the tie of row 0 (0.6).
    """
    anchors = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    positives = torch.tensor([[3.0, 4.0], [-2.0, 0.0], [4.0, 3.0]], dtype=torch.float64)
    bank = torch.tensor([[3.0, 4.0], [4.0, 3.0], [0.0, 5.0], [-1.0, 0.0]], dtype=torch.float64)
    valid = torch.tensor([[True] * 4, [True, True, True, False], [True] * 4])
    pos, neg, _ = similarities(anchors, positives, Negatives(bank, valid))
    assert pos.tolist() == [0.6, -1.0, 0.8] and neg[0].tolist() == [0.6, 0.8, 0.0, -1.0]
    picked = negative_mask(neg, valid, pos, semi_hard=True)
    assert picked.tolist() == [[c == k for c in range(4)] for k in (2, 2, 0)]
    lists = (anchors.tolist(), positives.tolist(), bank.tolist(), valid.tolist())
    assert [semi_hard_pick(lists[0][a], lists[1][a], lists[2], negatives_of(a, lists[2], lists[3])) for a in range(3)] == [[2], [2], [0]]
    got = nt_logistic(anchors, positives, Negatives(bank, valid), temperature=0.2, semi_hard=True).item()
    assert math.isclose(got, reference("nt_logistic", *lists, semi_hard=True), rel_tol=1e-12)
    got = margin_triplet(anchors, positives, Negatives(bank, valid), margin=0.5, semi_hard=True).item()
    assert math.isclose(got, reference("margin_triplet", *lists, semi_hard=True), rel_tol=1e-12)
    assert negative_mask(neg, valid, pos, semi_hard=False).tolist() == valid.tolist()
    assert negative_mask(neg, None, pos, semi_hard=False).all()


def test_defaults_are_simclrs_and_no_negatives_leave_the_positive_term() -> None:
    anchors, positives, bank, valid = random_case(5)
    lists = (anchors.tolist(), positives.tolist(), bank.tolist(), valid.tolist())
    negatives = Negatives(bank, valid)
    assert math.isclose(nt_logistic(anchors, positives, negatives).item(), reference("nt_logistic", *lists, t=0.2), rel_tol=1e-9)
    assert math.isclose(margin_triplet(anchors, positives, negatives).item(), reference("margin_triplet", *lists, m=0.5), rel_tol=1e-9)
    zero = margin_triplet(anchors, positives, None)
    assert zero.shape == () and zero.item() == 0.0
    only_positive = sum(-log_sigmoid(cosine(u, v) / 0.2) for u, v in zip(lists[0], lists[1])) / len(lists[0])
    assert math.isclose(nt_logistic(anchors, positives, None).item(), only_positive, rel_tol=1e-9)
