"""DCL, DCLW and MoCo v3's loss against their formulas written as loops over floats, and
in_batch's `positive_view` keys.

DCL and DCLW: the paper's eq. (6) (with w = 1 for DCL), over any bank and mask as the
other losses, and over SimCLR's two views as the paper writes it. MoCo v3: Algorithm 1,
ctr(q1, k2) + ctr(q2, k1) with ctr a cross-entropy over the N keys of the other view,
times 2t. Gradients against central differences of the same loops.
"""

from __future__ import annotations

import math

import pytest
import torch

from cmp.api.contracts import Negatives, PairBatch
from cmp_plugins.contrastive_losses import dcl, dclw, moco_v3_infonce
from cmp_plugins.negatives import InBatchNegatives, in_batch
from tests.helpers.numeric import Matrix, assert_grads_close, autograd, central_differences
from tests.plugins.test_loss_family import random_case
from tests.plugins.test_losses import cosine, simclr_batch


def weights_reference(anchors: Matrix, positives: Matrix, sigma: float) -> list[float]:
    """DCLW's w_i = 2 - exp(s_i / sigma) / (1/A sum_j exp(s_j / sigma))."""
    kernel = [math.exp(cosine(u, v) / sigma) for u, v in zip(anchors, positives)]
    mean = sum(kernel) / len(kernel)
    return [2 - k / mean for k in kernel]


def decoupled_reference(anchors: Matrix, positives: Matrix, bank: Matrix, valid: list[list[bool]] | None,
                        t: float, weights: list[float] | None = None) -> float:
    """Mean over anchors of -w_i s_ip / t + log sum over the valid negatives of exp(s_ik / t)."""
    total = 0.0
    for a, (u, v) in enumerate(zip(anchors, positives)):
        w = 1.0 if weights is None else weights[a]
        negatives = [math.exp(cosine(u, bank[k]) / t) for k in range(len(bank)) if valid is None or valid[a][k]]
        total += -w * cosine(u, v) / t + (math.log(sum(negatives)) if negatives else 0.0)
    return total / len(anchors)


def dcl_paper(z1: Matrix, z2: Matrix, t: float, sigma: float | None = None) -> float:
    """Eq. (6) over two views: for k in {1, 2} and image i, -w s(z_i^k, z_i^other) / t +
    log sum_{l in {1, 2}, j != i} exp(s(z_i^k, z_j^l) / t); mean over the 2N terms."""
    views, n = (z1, z2), len(z1)
    total = 0.0
    for k in range(2):
        anchors, positives = views[k], views[1 - k]
        weights = weights_reference(anchors, positives, sigma) if sigma is not None else [1.0] * n
        for i in range(n):
            negatives = sum(math.exp(cosine(anchors[i], views[v][j]) / t) for v in range(2) for j in range(n) if j != i)
            total += -weights[i] * cosine(anchors[i], positives[i]) / t + math.log(negatives)
    return total / (2 * n)


@pytest.mark.parametrize("masked", [False, True])
def test_dcl_and_dclw_match_eq_6_over_any_bank_and_mask(masked: bool) -> None:
    for seed in range(3):
        anchors, positives, bank, valid = random_case(seed, masked=masked)
        valid_list = valid.tolist() if valid is not None else None
        lists = (anchors.tolist(), positives.tolist(), bank.tolist(), valid_list)
        negatives = Negatives(bank, valid)
        for t in (0.1, 0.5):
            got = dcl(anchors, positives, negatives, temperature=t).item()
            assert math.isclose(got, decoupled_reference(*lists, t), rel_tol=1e-9)
            weights = weights_reference(lists[0], lists[1], 0.5)
            got = dclw(anchors, positives, negatives, temperature=t, sigma=0.5).item()
            assert math.isclose(got, decoupled_reference(*lists, t, weights), rel_tol=1e-9)


def test_dcl_and_dclw_with_in_batch_negatives_are_the_papers_two_view_loss() -> None:
    g = torch.Generator().manual_seed(0)
    for n, d, t, sigma in [(4, 3, 0.1, 0.5), (6, 5, 0.3, 0.2), (2, 4, 1.0, 1.0)]:
        z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
        z2 = z1 + torch.randn(n, d, generator=g, dtype=torch.float64)
        batch = simclr_batch(z1, z2)
        negatives = InBatchNegatives().negatives(batch)
        got = dcl(batch.anchors, batch.positives, negatives, temperature=t).item()
        assert math.isclose(got, dcl_paper(z1.tolist(), z2.tolist(), t), rel_tol=1e-9)
        got = dclw(batch.anchors, batch.positives, negatives, temperature=t, sigma=sigma).item()
        assert math.isclose(got, dcl_paper(z1.tolist(), z2.tolist(), t, sigma), rel_tol=1e-9)


def test_defaults_are_t_0_1_and_sigma_0_5() -> None:
    anchors, positives, bank, valid = random_case(9)
    lists = (anchors.tolist(), positives.tolist(), bank.tolist(), valid.tolist())
    negatives = Negatives(bank, valid)
    assert math.isclose(dcl(anchors, positives, negatives).item(), decoupled_reference(*lists, 0.1), rel_tol=1e-9)
    weights = weights_reference(lists[0], lists[1], 0.5)
    assert math.isclose(dclw(anchors, positives, negatives).item(), decoupled_reference(*lists, 0.1, weights), rel_tol=1e-9)


def test_dcl_gradient_is_the_formulas() -> None:
    anchors, positives, bank, valid = random_case(2)
    a, p, b = (x.clone().requires_grad_(True) for x in (anchors, positives, bank))
    got = autograd(dcl(a, p, Negatives(b, valid), temperature=0.3), a, p, b)
    want = central_differences(lambda m: decoupled_reference(m[0], m[1], m[2], valid.tolist(), 0.3),
                               [anchors.tolist(), positives.tolist(), bank.tolist()])
    assert_grads_close(got, want)


@pytest.mark.parametrize("weight_gradient", [False, True])
def test_dclw_gradient_treats_the_weights_as_constants_or_differentiates_them(weight_gradient: bool) -> None:
    anchors, positives, bank, valid = random_case(4)
    a, p, b = (x.clone().requires_grad_(True) for x in (anchors, positives, bank))
    got = autograd(dclw(a, p, Negatives(b, valid), temperature=0.3, sigma=0.4, weight_gradient=weight_gradient), a, p, b)
    fixed = weights_reference(anchors.tolist(), positives.tolist(), 0.4)

    def reference(m: list[Matrix]) -> float:
        weights = weights_reference(m[0], m[1], 0.4) if weight_gradient else fixed
        return decoupled_reference(m[0], m[1], m[2], valid.tolist(), 0.3, weights)

    want = central_differences(reference, [anchors.tolist(), positives.tolist(), bank.tolist()])
    assert_grads_close(got, want)
    other = autograd(dclw(a, p, Negatives(b, valid), temperature=0.3, sigma=0.4, weight_gradient=not weight_gradient), a, p, b)
    assert not torch.allclose(torch.tensor(other[0]), torch.tensor(got[0]))


@pytest.mark.parametrize("loss", [dcl, dclw])
def test_an_anchor_without_negatives_keeps_its_positive_term_and_a_finite_gradient(loss) -> None:  # type: ignore[no-untyped-def]
    anchors, positives, bank, _ = random_case(6, a=3, k=4)
    valid = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    a = anchors.clone().requires_grad_(True)
    value = loss(a, positives, Negatives(bank, valid), temperature=0.2)
    weights = weights_reference(anchors.tolist(), positives.tolist(), 0.5) if loss is dclw else None
    want = decoupled_reference(anchors.tolist(), positives.tolist(), bank.tolist(), valid.tolist(), 0.2, weights)
    assert math.isclose(value.item(), want, rel_tol=1e-9)
    value.backward()
    assert torch.isfinite(a.grad).all()
    empty = loss(anchors, positives, Negatives(bank[:0]), temperature=0.2).item()  # a queue before its first push
    assert math.isclose(empty, decoupled_reference(anchors.tolist(), positives.tolist(), [], None, 0.2, weights), rel_tol=1e-9)


def test_half_precision_inputs_give_a_float32_loss() -> None:
    anchors, positives, bank, valid = random_case(1)
    for loss in (dcl, dclw, moco_v3_infonce):
        assert loss(anchors.bfloat16(), positives.bfloat16(), Negatives(bank.bfloat16(), valid)).dtype == torch.float32


# MoCo v3


def ctr(q: Matrix, k: Matrix, t: float) -> float:
    """Algorithm 1's ctr: cross-entropy of q_i's logits q_i . k_j / t (normalised) at label i, mean, times 2t."""
    total = 0.0
    for i, q_i in enumerate(q):
        logits = [cosine(q_i, k_j) / t for k_j in k]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(q) * 2 * t


def moco_v3_batch(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, ids: torch.Tensor) -> PairBatch:
    """The step's PairBatch as the engine builds it for pairs (0, 1), (1, 0) with a momentum target."""
    return PairBatch(anchors=torch.cat([q1, q2]), positives=torch.cat([k2, k1]), anchor_ids=ids.repeat(2),
                     keys=torch.cat([k1, k2]), key_ids=ids.repeat(2), key_views=2)


def moco_v3_tensors(seed: int, n: int, d: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize(("n", "d", "t"), [(4, 3, 1.0), (7, 5, 0.2), (2, 2, 0.5)])
def test_moco_v3_loss_with_positive_view_keys_is_algorithm_1_halved(n: int, d: int, t: float) -> None:
    q1, q2, k1, k2 = moco_v3_tensors(n, n, d)
    batch = moco_v3_batch(q1, q2, k1, k2, torch.arange(10, 10 + n))
    negatives = in_batch(d, keys="positive_view").negatives(batch)
    got = moco_v3_infonce(batch.anchors, batch.positives, negatives, temperature=t).item()
    algorithm_1 = ctr(q1.tolist(), k2.tolist(), t) + ctr(q2.tolist(), k1.tolist(), t)
    assert math.isclose(2 * got, algorithm_1, rel_tol=1e-9)


def test_moco_v3_default_temperature_is_1_and_the_gradient_is_algorithm_1s() -> None:
    q1, q2, k1, k2 = moco_v3_tensors(0, 5, 3)
    a, b = q1.clone().requires_grad_(True), q2.clone().requires_grad_(True)
    batch = moco_v3_batch(a, b, k1, k2, torch.arange(5))
    got_loss = moco_v3_infonce(batch.anchors, batch.positives, in_batch(3, keys="positive_view").negatives(batch))
    got = autograd(got_loss, a, b)
    want = central_differences(lambda m: (ctr(m[0], k2.tolist(), 1.0) + ctr(m[1], k1.tolist(), 1.0)) / 2,
                               [q1.tolist(), q2.tolist()])
    assert_grads_close(got, want)


def test_positive_view_keys_are_the_other_images_of_the_positives_view_only() -> None:
    n, d = 5, 3
    q1, q2, k1, k2 = moco_v3_tensors(1, n, d)
    ids = torch.tensor([7, 3, 9, 0, 4])
    batch = moco_v3_batch(q1, q2, k1, k2, ids)
    negatives = in_batch(d, keys="positive_view").negatives(batch)
    assert negatives.valid is not None and (negatives.valid.sum(dim=1) == n - 1).all()
    for row in range(2 * n):
        positive_view = k2 if row < n else k1
        chosen = negatives.bank[negatives.valid[row]]
        expected = torch.cat([positive_view[:row % n], positive_view[row % n + 1:]])
        assert torch.equal(chosen, expected), row
    all_keys = in_batch(d).negatives(batch).valid
    assert all_keys is not None and (all_keys.sum(dim=1) == 2 * n - 2).all()  # SimCLR's, for contrast


def test_positive_view_keys_with_one_way_pairs_and_with_multicrop_pairs() -> None:
    n, d = 4, 2
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    ids = torch.arange(n)
    one_way = PairBatch(q, k, ids, k, ids, key_views=1)
    valid = InBatchNegatives("positive_view").negatives(one_way).valid
    assert valid is not None and valid.tolist() == [[i != j for j in range(n)] for i in range(n)]
    # three anchors' views against global view 0: each anchor row sees the N - 1 other rows of view 0
    views = [torch.randn(n, d, generator=g) for _ in range(3)]
    multicrop = PairBatch(torch.cat(views), views[0].repeat(3, 1), ids.repeat(3), views[0], ids, key_views=1)
    negatives = InBatchNegatives("positive_view").negatives(multicrop)
    assert negatives.valid is not None and (negatives.valid.sum(dim=1) == n - 1).all()
    for row in range(3 * n):
        chosen = negatives.bank[negatives.valid[row]]
        assert torch.equal(chosen, torch.cat([views[0][: row % n], views[0][row % n + 1 :]]))


def test_positive_view_keys_refuse_a_batch_that_is_not_whole_pairs() -> None:
    keys, ids = torch.randn(4, 2), torch.arange(4)
    batch = PairBatch(torch.randn(6, 2), torch.randn(6, 2), torch.arange(6), keys, ids, key_views=1)
    with pytest.raises(ValueError, match=r"in_batch \(keys: positive_view\): 6 positive rows are not whole pairs of the step's 4 images"):
        InBatchNegatives("positive_view").negatives(batch)
