"""DINO's objective (`plugins/self_distillation.py`) and head (`plugins/heads.py`) against
the paper's Algorithm 1, the official `DINOLoss` and `DINOHead` written out here, and
lightly's `DINOLoss`: the loss and its gradient with multi-crop, the centre's update, the
teacher temperature's warm-up, the head's unit-norm last layer and its freeze."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp.api.contracts import PairBatch
from cmp.engine.learner import view_pairs
from cmp_plugins.heads import dino_head
from cmp_plugins.self_distillation import dino

B, D = 6, 9
STUDENT_T = 0.1


@pytest.fixture(autouse=True)
def float64() -> Iterator[None]:
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def algorithm_1_h(t: Tensor, s: Tensor, center: Tensor, teacher_t: float) -> Tensor:
    """Algorithm 1's H(t, s): -(softmax((t - C) / tpt) * log softmax(s / tps)).sum(1).mean()."""
    t = t.detach()
    s = F.softmax(s / STUDENT_T, dim=1)
    t = F.softmax((t - center) / teacher_t, dim=1)
    return -(t * torch.log(s)).sum(dim=1).mean()


def official_loss(teacher: list[Tensor], student: list[Tensor], center: Tensor, teacher_t: float) -> Tensor:
    """The official DINOLoss.forward: every student crop against each teacher crop but its
    own, the total over the number of terms (with two crops: H(t1, s2)/2 + H(t2, s1)/2)."""
    total, terms = torch.zeros(()), 0
    for iq, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v != iq:
                total = total + algorithm_1_h(t, s, center, teacher_t)
                terms += 1
    return total / terms


def cmp_batch(teacher: list[Tensor], student: list[Tensor]) -> PairBatch:
    pairs = view_pairs("multicrop", len(student), 2)
    ids = torch.arange(B)
    return PairBatch(torch.cat([student[i] for i, _ in pairs]), torch.cat([teacher[j] for _, j in pairs]),
                     ids.repeat(len(pairs)), torch.cat(teacher), ids.repeat(2), key_views=2, pairs=tuple(pairs))


def outputs(views: int, seed: int = 0) -> tuple[list[Tensor], list[Tensor], Tensor]:
    g = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(B, D, generator=g) for _ in range(2)]
    student = [torch.randn(B, D, generator=g).requires_grad_() for _ in range(views)]
    return teacher, student, 0.3 * torch.randn(1, D, generator=g)


@pytest.mark.parametrize("views", [2, 4, 10])
def test_the_loss_its_gradient_and_the_centre_are_algorithm_1s(views: int) -> None:
    teacher, student, center = outputs(views)
    objective = dino(D, warmup=0.5)
    objective.center.copy_(center)
    batch = cmp_batch(teacher, student)
    got = objective(batch, 0.25)  # halfway through the warm-up: 0.04 + 0.03 / 2
    got.backward()
    got_grads = [s.grad.clone() for s in student]  # type: ignore[union-attr]
    for s in student:
        s.grad = None
    want = official_loss(teacher, student, center, 0.055)
    want.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for view, (mine, s) in enumerate(zip(got_grads, student)):
        torch.testing.assert_close(mine, s.grad, rtol=1e-10, atol=1e-14, msg=f"view {view}")
    objective.update(batch, 0.3)
    torch.testing.assert_close(objective.center, 0.9 * center + 0.1 * torch.cat(teacher).mean(dim=0, keepdim=True))


@pytest.mark.parametrize("views", [2, 5])
def test_the_loss_and_centre_are_lightlys(views: int) -> None:
    from lightly.loss import DINOLoss

    teacher, student, center = outputs(views, seed=2)
    objective = dino(D, warmup=0.0, teacher_temperature=0.06)
    objective.center.copy_(center)
    reference = DINOLoss(output_dim=D, warmup_teacher_temp=0.06, teacher_temp=0.06, student_temp=STUDENT_T, center_momentum=0.9)
    reference.center.copy_(center.unsqueeze(0))
    batch = cmp_batch(teacher, student)
    got = objective(batch, 0.5)
    want = reference(teacher, student, teacher_temp=0.06)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    objective.update(batch, 0.6)
    torch.testing.assert_close(objective.center, reference.center.squeeze(0), atol=1e-6, rtol=0)


def test_the_teacher_temperature_warms_up_linearly_then_stays() -> None:
    objective = dino(D, warmup=0.2)
    got = [objective.teacher_temperature_at(p) for p in (0.0, 0.1, 0.2, 0.7)]
    assert got == pytest.approx([0.04, 0.055, 0.07, 0.07])
    assert dino(D, warmup=0.0).teacher_temperature_at(0.0) == 0.07


def official_head(in_dim: int, hidden: int, bottleneck: int, out: int) -> nn.Module:
    """The official DINOHead (3 layers, no BN, norm_last_layer) with torch's weight norm."""

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                     nn.Linear(hidden, bottleneck))
            self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out, bias=False))
            self.last_layer.parametrizations.weight.original0.data.fill_(1)
            self.last_layer.parametrizations.weight.original0.requires_grad = False

        def forward(self, x: Tensor) -> Tensor:
            return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))

    return Head()


def test_the_head_is_the_official_dino_head_with_its_gain_fixed_to_one() -> None:
    torch.manual_seed(0)
    head = dino_head(6, hidden_dim=8, bottleneck_dim=4, out_dim=11)
    reference = official_head(6, 8, 4, 11)
    with torch.no_grad():
        for mine, theirs in zip(head.mlp, reference.mlp):
            if isinstance(mine, nn.Linear):
                theirs.weight.copy_(mine.weight)
                theirs.bias.copy_(mine.bias)
        reference.last_layer.parametrizations.weight.original1.copy_(head.last_layer.weight)
    x = torch.randn(5, 6)
    torch.testing.assert_close(head(x), reference(x))
    head(x).pow(2).sum().backward()
    reference(x).pow(2).sum().backward()
    torch.testing.assert_close(head.last_layer.weight.grad, reference.last_layer.parametrizations.weight.original1.grad)
    assert all(float(layer.bias.detach().abs().max()) == 0 for layer in head.mlp if isinstance(layer, nn.Linear))
    assert 0.01 < float(head.mlp[0].weight.detach().std()) < 0.03  # truncated normal, std 0.02


def test_the_last_layer_is_frozen_until_its_fraction_of_the_budget() -> None:
    head = dino_head(6, hidden_dim=8, bottleneck_dim=4, out_dim=11, freeze_last_layer=0.1)
    assert head.frozen_parameters(0.05) == [head.last_layer.weight]
    assert head.frozen_parameters(0.1) == []
