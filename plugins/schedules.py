"""Learning-rate schedules stepped once per training step, with linear warm-up.

The warm-up is given in epochs (`warmup_epochs`, the papers' unit) or as a share of the
whole budget (`warmup_fraction`): under a step budget the second keeps the warm-up the same
share of training at every batch size, where one epoch may be the whole budget at a small
batch and a single step at a large one.

A parameter group flagged `fixed_lr` (SimSiam's predictor, docs/plugin-reference.md "Parameter-group
options") keeps its initial learning rate throughout: no warm-up, no decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from cmp import hookimpl
from cmp.api.hookspecs import Register
from cmp.api.params import NonNegative, ParamError, Probability


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, final_fraction: float) -> float:
    """The lr multiplier at `step`: linear warm-up from 1/warmup, then cosine to `final_fraction`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def _both_warmups(warmup_epochs: float, warmup_fraction: float) -> str | None:
    if warmup_epochs and warmup_fraction:
        return (f"give warmup_epochs ({warmup_epochs}) or warmup_fraction ({warmup_fraction}), not both "
                "(a preset may set warmup_epochs: set it to 0 beside warmup_fraction)")
    return None


def check_warmup(params: Mapping[str, Any]) -> None:
    """At recipe load: `ParamError` naming `warmup_fraction` when both warm-ups are set."""
    problem = _both_warmups(params.get("warmup_epochs", 0.0), params.get("warmup_fraction", 0.0))
    if problem:
        raise ParamError(("warmup_fraction",), problem)


def warmup_steps(total_steps: int, steps_per_epoch: int, warmup_epochs: float, warmup_fraction: float) -> int:
    """Warm-up length in steps, from epochs or from a share of `total_steps` (not both)."""
    problem = _both_warmups(warmup_epochs, warmup_fraction)
    if problem:
        raise ValueError(problem)
    steps = warmup_fraction * total_steps if warmup_fraction else warmup_epochs * steps_per_epoch
    return min(total_steps, round(steps))


def per_group(optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> list[Callable[[int], float]]:
    """`factor` for every parameter group, but a constant 1 for a group flagged `fixed_lr`."""
    return [(lambda _: 1.0) if group.get("fixed_lr") else factor for group in optimizer.param_groups]


def cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, *,
    warmup_epochs: NonNegative = 0.0, warmup_fraction: Probability = 0.0, final_lr_fraction: Probability = 0.0,
) -> LambdaLR:
    """Cosine decay to final_lr_fraction x lr after a linear warm-up (warmup_epochs, or warmup_fraction of the budget)."""
    warmup = warmup_steps(total_steps, steps_per_epoch, warmup_epochs, warmup_fraction)
    return LambdaLR(optimizer, per_group(optimizer, lambda s: warmup_cosine_factor(s, total_steps, warmup, final_lr_fraction)))


def constant(
    optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, *,
    warmup_epochs: NonNegative = 0.0, warmup_fraction: Probability = 0.0,
) -> LambdaLR:
    """A constant learning rate after a linear warm-up (warmup_epochs, or warmup_fraction of the budget)."""
    warmup = warmup_steps(total_steps, steps_per_epoch, warmup_epochs, warmup_fraction)
    return LambdaLR(optimizer, per_group(optimizer, lambda s: (s + 1) / warmup if s < warmup else 1.0))


@hookimpl
def cmp_register_schedules(register: Register) -> None:
    register("cosine", cosine, check_params=check_warmup)
    register("constant", constant, check_params=check_warmup)
