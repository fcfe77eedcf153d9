"""Optimizers: SGD, AdamW and LARS, with explicit learning-rate scaling.

`lr_scaling` says how the learning rate follows the batch size, relative to 256: `none`
(lr as given), `linear` (lr x B/256, SimCLR's LARS rule) or `sqrt` (lr x sqrt(B/256)).
The scaled rate is what the run logs; nothing is rescaled without the recipe saying so.
Groups the engine flags `exclude_from_decay` (biases, norm layers) get no weight decay
and, under LARS, no trust-ratio adaptation, unless `exclude_bias_and_norm` is false
(SimSiam's code decays every parameter); LARS's `bias_lr` gives them a learning rate of
their own (Barlow Twins: 0.2 for weights, 0.0048 for biases and norms). Other options the
engine put on a group (`fixed_lr`) stay on it for the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import annotated_types as at
import torch
from torch import Tensor

from cmp import hookimpl
from cmp.api.hookspecs import Register
from cmp.api.params import NonNegative, Positive

Momentum = Annotated[float, at.Ge(0), at.Lt(1)]
Scaling = Literal["none", "linear", "sqrt"]


def scaled_lr(lr: float, batch_size: int, scaling: Scaling) -> float:
    """The learning rate after batch-size scaling relative to 256."""
    ratio = batch_size / 256
    return {"none": lr, "linear": lr * ratio, "sqrt": lr * math.sqrt(ratio)}[scaling]


def _groups(
    param_groups: list[dict[str, Any]], weight_decay: float, exclude_bias_and_norm: bool, bias_lr: float | None = None,
) -> list[dict[str, Any]]:
    """The engine's groups with their weight decay; `exclude_from_decay` is kept true only
    where biases and norms are excluded, and they get `bias_lr` (already scaled) if given."""
    groups = []
    for g in param_groups:
        bias_or_norm = bool(g.get("exclude_from_decay"))
        excluded = bias_or_norm and exclude_bias_and_norm
        group = {**g, "exclude_from_decay": excluded, "weight_decay": 0.0 if excluded else weight_decay}
        if bias_or_norm and bias_lr is not None:
            group["lr"] = bias_lr
        groups.append(group)
    return groups


def sgd(
    param_groups: list[dict[str, Any]], batch_size: int, *,
    lr: Positive = 0.1, momentum: Momentum = 0.9, weight_decay: NonNegative = 5e-4,
    nesterov: bool = False, lr_scaling: Scaling = "none", exclude_bias_and_norm: bool = True,
) -> torch.optim.SGD:
    """SGD with momentum."""
    return torch.optim.SGD(
        _groups(param_groups, weight_decay, exclude_bias_and_norm), lr=scaled_lr(lr, batch_size, lr_scaling),
        momentum=momentum, nesterov=nesterov and momentum > 0,
    )


def adamw(
    param_groups: list[dict[str, Any]], batch_size: int, *,
    lr: Positive = 1e-3, betas: tuple[Momentum, Momentum] = (0.9, 0.999),
    weight_decay: NonNegative = 1e-4, lr_scaling: Scaling = "none", exclude_bias_and_norm: bool = True,
) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(
        _groups(param_groups, weight_decay, exclude_bias_and_norm), lr=scaled_lr(lr, batch_size, lr_scaling), betas=betas
    )


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (You et al. 2017), as SimCLR uses it.

    For each parameter not excluded: g <- g + wd w; g <- g * eta ||w|| / ||g|| (when both
    norms are positive); then heavy-ball momentum. Excluded groups take plain SGD steps.
    """

    def __init__(self, params: Any, lr: float, momentum: float, weight_decay: float, eta: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]  # torch's Optimizer.step is overloaded on the closure; this one keeps the common form
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if not group.get("exclude_from_decay"):
                if group["weight_decay"]:
                    grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
                w_norm = torch._foreach_norm(params)
                g_norm = torch._foreach_norm(grads)
                trust = [
                    torch.where((w > 0) & (g > 0), group["eta"] * w / g, torch.ones_like(w))
                    for w, g in zip(w_norm, g_norm)
                ]
                grads = list(torch._foreach_mul(grads, trust))
            bufs: list[Tensor] = []
            for p, g in zip(params, grads):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                bufs.append(state["momentum_buffer"])
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        return loss


def lars(
    param_groups: list[dict[str, Any]], batch_size: int, *,
    lr: Positive = 0.3, momentum: Momentum = 0.9, weight_decay: NonNegative = 1e-6,
    eta: Positive = 1e-3, lr_scaling: Scaling = "linear", exclude_bias_and_norm: bool = True,
    bias_lr: Positive | None = None,
) -> LARS:
    """LARS (SimCLR's optimizer: lr 0.3 x B/256, weight decay 1e-6, eta 1e-3).

    Biases and norm parameters take plain SGD steps without weight decay unless
    `exclude_bias_and_norm` is false, at `bias_lr` (scaled as `lr`) when given, else at `lr`.
    """
    bias = None if bias_lr is None else scaled_lr(bias_lr, batch_size, lr_scaling)
    return LARS(
        _groups(param_groups, weight_decay, exclude_bias_and_norm, bias), lr=scaled_lr(lr, batch_size, lr_scaling),
        momentum=momentum, weight_decay=weight_decay, eta=eta,
    )


@hookimpl
def cmp_register_optimizers(register: Register) -> None:
    register("sgd", sgd)
    register("adamw", adamw)
    register("lars", lars)
