"""SwAV's objective (`plugins/clustering.py`) against the paper's Algorithm 1 and the
official main_swav.py loop written out here, and against lightly's `SwaVLoss`: the loss,
its gradient on the embeddings and the prototypes, with multi-crop and with a queue; the
prototypes' in-place normalisation, their freeze, the queue's start and fill."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from cmp.api.contracts import PairBatch
from cmp.engine.learner import view_pairs
from cmp_plugins.clustering import swav

B, D, K, TAU = 6, 5, 7, 0.1


@pytest.fixture(autouse=True)
def float64() -> Iterator[None]:
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def paper_sinkhorn(scores: Tensor, eps: float = 0.05, niters: int = 3) -> Tensor:
    """Algorithm 1's sinkhorn, with its marginals r and c written out."""
    q = torch.exp(scores / eps).T
    q = q / q.sum()
    k, b = q.shape
    r, c = torch.ones(k) / k, torch.ones(b) / b
    for _ in range(niters):
        u = q.sum(dim=1)
        q = q * (r / u).unsqueeze(1)
        q = q * (c / q.sum(dim=0)).unsqueeze(0)
    return (q / q.sum(dim=0, keepdim=True)).T


def official_loss(z: list[Tensor], prototypes: Tensor, queue: list[Tensor] | None = None) -> Tensor:
    """main_swav.py's train loop: normalised z, scores against the prototypes (unit rows:
    the code normalises them in place, outside autograd, before the step); for each global
    crop its codes (after the queue's scores, when given), predicted by every other crop;
    subloss / (crops - 1), mean over the global crops."""
    c = prototypes
    scores = [F.normalize(v, dim=1) @ c.T for v in z]
    loss = torch.zeros(())
    for crop in range(2):
        with torch.no_grad():
            out = scores[crop].detach()
            if queue is not None:
                out = torch.cat([queue[crop] @ c.T, out])
            q = paper_sinkhorn(out)[-B:]
        subloss = torch.zeros(())
        for v in range(len(z)):
            if v != crop:
                subloss = subloss - (q * F.log_softmax(scores[v] / TAU, dim=1)).sum(dim=1).mean()
        loss = loss + subloss / (len(z) - 1)
    return loss / 2


def cmp_batch(z: list[Tensor]) -> PairBatch:
    """The PairBatch the learner makes of these embeddings with `pairs: multicrop` (2 global views)."""
    pairs = view_pairs("multicrop", len(z), 2)
    ids = torch.arange(B)
    return PairBatch(torch.cat([z[i] for i, _ in pairs]), torch.cat([z[j] for _, j in pairs]), ids.repeat(len(pairs)),
                     torch.cat(z[:2]), ids.repeat(2), key_views=2, pairs=tuple(pairs))


def embeddings(views: int, seed: int = 0) -> tuple[list[Tensor], Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = [(2 * torch.randn(B, D, generator=g)).requires_grad_() for _ in range(views)]
    return z, torch.randn(K, D, generator=g) * 3


def queue_rows(seed: int = 9, rows: int = 12) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(rows, D, generator=g), dim=1) for _ in range(2)]


@pytest.mark.parametrize("views", [2, 3, 6])
@pytest.mark.parametrize("with_queue", [False, True])
def test_the_loss_and_its_gradients_are_the_official_codes(views: int, with_queue: bool) -> None:
    z, prototypes = embeddings(views)
    objective = swav(D, prototypes=K, queue_size=12 if with_queue else 0, queue_start=0.0)
    objective.prototypes.weight.data.copy_(prototypes)
    queued = queue_rows() if with_queue else None
    if queued is not None:
        assert objective.queue is not None
        objective.queue.push(torch.cat(queued, dim=1))  # one row per image: both global views side by side
    got = objective(cmp_batch(z), 0.5)
    got.backward()
    got_grads = [v.grad.clone() for v in z]  # type: ignore[union-attr]
    got_prototype_grad = objective.prototypes.weight.grad

    for v in z:
        v.grad = None
    unit = F.normalize(prototypes, dim=1).requires_grad_()
    want = official_loss(z, unit, queued)
    want.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-12, abs=1e-12)
    for view, (mine, theirs) in enumerate(zip(got_grads, z)):
        torch.testing.assert_close(mine, theirs.grad, rtol=1e-10, atol=1e-12, msg=f"view {view}")
    torch.testing.assert_close(got_prototype_grad, unit.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(objective.prototypes.weight.detach(), unit.detach())  # normalised in place


@pytest.mark.parametrize("with_queue", [False, True])
def test_the_loss_is_lightlys_swav_loss(with_queue: bool) -> None:
    from lightly.loss import SwaVLoss

    z, prototypes = embeddings(5, seed=3)
    objective = swav(D, prototypes=K, queue_size=12 if with_queue else 0)
    objective.prototypes.weight.data.copy_(prototypes)
    queued = queue_rows(4) if with_queue else None
    if queued is not None:
        assert objective.queue is not None
        objective.queue.push(torch.cat(queued, dim=1))
    got = objective(cmp_batch(z), 0.5)
    unit = F.normalize(prototypes, dim=1)
    scores = [F.normalize(v, dim=1) @ unit.T for v in z]
    queue_scores = [q @ unit.T for q in queued] if queued is not None else None
    want = SwaVLoss(temperature=TAU, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(scores[:2], scores[2:], queue_scores)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_cmps_sinkhorn_is_algorithm_1s_and_equipartitions_the_batch() -> None:
    from cmp.nn import sinkhorn_knopp

    scores = F.normalize(torch.randn(40, D), dim=1) @ F.normalize(torch.randn(K, D), dim=1).T
    codes = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    torch.testing.assert_close(codes, paper_sinkhorn(scores), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(40))  # each sample's code is a distribution
    many = sinkhorn_knopp(scores, iterations=200)
    torch.testing.assert_close(many.sum(dim=0), torch.full((K,), 40 / K), rtol=1e-6, atol=1e-6)  # equal mass per prototype


def test_the_queue_joins_the_codes_only_once_full_and_fills_from_its_start() -> None:
    z, prototypes = embeddings(3, seed=5)
    objective = swav(D, prototypes=K, queue_size=2 * B, queue_start=0.5)
    objective.prototypes.weight.data.copy_(prototypes)
    batch = cmp_batch(z)
    objective(batch, 0.25)
    objective.update(batch, 0.3)
    assert objective.queue is not None and objective.queue.count == 0  # before queue_start nothing is kept
    without = objective(batch, 0.5)
    objective.update(batch, 0.6)
    assert objective.queue.count == B and objective.stats() == {"queue_fill": 0.5, "queue_used": 0.0}
    torch.testing.assert_close(objective.queue.values()[:, :D], F.normalize(z[0].detach(), dim=1))
    torch.testing.assert_close(objective.queue.values()[:, D:], F.normalize(z[1].detach(), dim=1))
    assert objective(batch, 0.6).item() == pytest.approx(without.item())  # half full: not used yet
    other = cmp_batch(embeddings(3, seed=6)[0])  # (a copy of the batch itself would not change the codes)
    objective(other, 0.6)
    objective.update(other, 0.7)
    used = objective(batch, 0.7)
    assert objective.stats()["queue_used"] == 1.0
    assert abs(used.item() - without.item()) > 1e-6


def test_the_prototypes_are_frozen_until_their_fraction_of_the_budget() -> None:
    objective = swav(D, prototypes=K, freeze_prototypes_until=0.2)
    assert objective.frozen_parameters(0.0) == [objective.prototypes.weight]
    assert objective.frozen_parameters(0.19) == [objective.prototypes.weight]
    assert objective.frozen_parameters(0.2) == []


def test_a_queue_no_larger_than_a_batch_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cmp.api.loader import load_plugins
    from cmp.config.cells import resolve
    from cmp.config.recipe import load_recipe
    from cmp.errors import RecipeError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {dataset: digits}\ntrain: {epochs: 1, batch_size: 64}\n"
                      "methods:\n  swav: {preset: swav, objective: {name: swav, params: {queue_size: 64}}}\nbaselines: []\n")
    with pytest.raises(RecipeError, match=r"methods\.swav\.objective\.params\.queue_size.*holds no more than one batch of 64"):
        resolve(load_recipe(recipe), load_plugins("none").registry)
