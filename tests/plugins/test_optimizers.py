"""LARS against a hand computation; learning-rate scaling; per-group settings; schedules."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from cmp_plugins.heads import mlp
from cmp_plugins.optimizers import adamw, lars, scaled_lr, sgd
from cmp_plugins.schedules import constant, cosine, warmup_cosine_factor, warmup_steps


def test_lars_step_matches_hand_computation() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    w.grad = torch.tensor([0.6, 0.8])
    b.grad = torch.tensor([0.5])
    opt = lars(
        [{"params": [w]}, {"params": [b], "exclude_from_decay": True}], 256,
        lr=0.1, momentum=0.9, weight_decay=0.01, eta=0.001, lr_scaling="none",
    )
    opt.step()
    g = torch.tensor([0.6, 0.8]) + 0.01 * torch.tensor([3.0, 4.0])  # g + wd * w
    trust = 0.001 * 5.0 / g.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * trust * g)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))  # plain SGD, no decay
    w.grad = torch.tensor([0.6, 0.8])
    b.grad = torch.tensor([0.5])
    before = b.detach().clone()
    opt.step()
    torch.testing.assert_close(b.detach(), before - 0.1 * (0.9 * 0.5 + 0.5))  # heavy-ball momentum


def test_excluded_groups_get_no_weight_decay() -> None:
    p, q = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    opt = sgd([{"params": [p]}, {"params": [q], "exclude_from_decay": True}], 128, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_lr_scaling_is_explicit() -> None:
    assert scaled_lr(0.3, 512, "none") == 0.3
    assert scaled_lr(0.3, 512, "linear") == pytest.approx(0.6)
    assert scaled_lr(0.3, 1024, "sqrt") == pytest.approx(0.6)
    p = torch.nn.Parameter(torch.ones(1))
    assert sgd([{"params": [p]}], 64, lr=1.0, lr_scaling="linear").param_groups[0]["lr"] == 0.25


def test_cosine_schedule_warms_up_then_decays() -> None:
    assert warmup_cosine_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert warmup_cosine_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine_factor(10, 100, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert warmup_cosine_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=2.0)
    schedule = cosine(opt, 40, 10, warmup_epochs=1)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[9] == pytest.approx(2.0)
    assert lrs[25] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 15 / 30)))


def lrs_of(schedule_of: Callable[[torch.optim.Optimizer], LambdaLR], steps: int) -> list[float]:
    """The learning rate at each of `steps` steps of a schedule over an optimizer with lr 1."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    schedule = schedule_of(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return lrs


def test_a_warmup_fraction_is_the_same_share_of_a_step_budget_whatever_the_epoch_length() -> None:
    # 32 steps: one epoch of batch 256 on 8 192 images is the whole budget, of batch 4 096 two steps
    assert warmup_steps(32, 32, 1.0, 0.0) == 32 and warmup_steps(32, 2, 1.0, 0.0) == 2
    assert warmup_steps(32, 32, 0.0, 0.1) == warmup_steps(32, 2, 0.0, 0.1) == 3
    assert warmup_steps(32, 2, 0.0, 0.0) == 0
    for epoch_length in (32, 2):
        lrs = lrs_of(lambda opt, n=epoch_length: cosine(opt, 32, n, warmup_fraction=0.1), 32)
        assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
        assert lrs[3 + 14] == pytest.approx(0.5 * (1 + math.cos(math.pi * 14 / 29)))
        held = lrs_of(lambda opt, n=epoch_length: constant(opt, 32, n, warmup_fraction=0.25), 12)
        assert held == pytest.approx([1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"give warmup_epochs \(1.0\) or warmup_fraction \(0.1\), not both"):
        cosine(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0), 32, 2, warmup_epochs=1.0, warmup_fraction=0.1)


def test_biases_and_norms_are_decayed_and_adapted_when_not_excluded() -> None:
    """SimSiam's code decays every parameter: `exclude_bias_and_norm: false`. Under LARS the
    bias then takes an adapted step like a weight: trust eta ||b|| / ||g + wd b||."""
    p, q = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    groups = [{"params": [p]}, {"params": [q], "exclude_from_decay": True}]
    for factory in (sgd, adamw, lars):
        opt = factory(groups, 256, weight_decay=0.1, exclude_bias_and_norm=False)
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.1]
        assert [g["exclude_from_decay"] for g in opt.param_groups] == [False, False]
    b = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    b.grad = torch.tensor([0.6, 0.8])
    lars([{"params": [b], "exclude_from_decay": True}], 256, lr=0.1, weight_decay=0.01, eta=0.001,
         lr_scaling="none", exclude_bias_and_norm=False).step()
    g = torch.tensor([0.6, 0.8]) + 0.01 * torch.tensor([3.0, 4.0])
    torch.testing.assert_close(b.detach(), torch.tensor([3.0, 4.0]) - 0.1 * (0.001 * 5.0 / g.norm()) * g)


def test_lars_gives_biases_and_norms_their_own_scaled_learning_rate() -> None:
    """Barlow Twins: lr 0.2 for weights, 0.0048 for biases and BN, both x B / 256."""
    w, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    groups = [{"params": [w]}, {"params": [b], "exclude_from_decay": True}]
    opt = lars(groups, 512, lr=0.2, bias_lr=0.0048, weight_decay=1.5e-6)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.4, 0.0096])
    assert [g["weight_decay"] for g in opt.param_groups] == [1.5e-6, 0.0]
    b.grad = torch.tensor([1.0, -2.0])
    opt.step()  # no adaptation: a plain step at the bias rate
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.0096, 1.0 + 2 * 0.0096]))
    assert [g["lr"] for g in lars(groups, 512, lr=0.2).param_groups] == pytest.approx([0.4, 0.4])


def fixed_and_decayed(schedule_of: Callable[[torch.optim.Optimizer], LambdaLR], steps: int) -> tuple[list[float], list[float]]:
    """The lr of a plain group and of a `fixed_lr` group (both lr 2) at each of `steps` steps."""
    head = mlp(3, hidden_dim=2, out_dim=3, fixed_lr=True)
    groups = [{"params": [torch.nn.Parameter(torch.ones(2))]}, {"params": list(head.parameters()), **head.param_group_options}]
    opt = sgd(groups, 256, lr=2.0)
    schedule = schedule_of(opt)
    plain, fixed = [], []
    for _ in range(steps):
        plain.append(opt.param_groups[0]["lr"])
        fixed.append(opt.param_groups[1]["lr"])
        opt.step()
        schedule.step()
    return plain, fixed


def test_a_fixed_lr_group_keeps_its_rate_through_warm_up_and_decay() -> None:
    plain, fixed = fixed_and_decayed(lambda opt: cosine(opt, 20, 5, warmup_epochs=1), 20)
    assert plain[:5] == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0])
    assert plain[-1] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 14 / 15)))
    assert fixed == [2.0] * 20
    plain, fixed = fixed_and_decayed(lambda opt: constant(opt, 8, 4, warmup_epochs=1), 8)
    assert plain == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0]) and fixed == [2.0] * 8
