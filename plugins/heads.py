"""Projection heads and predictors: MLPs with configurable width, depth and BatchNorm.

A head built with `fixed_lr` declares `param_group_options = {"fixed_lr": True}`: the
engine puts its parameters in optimizer groups of their own, whose learning rate the
schedules leave at its initial value (SimSiam's predictor; docs/plugins.md,
"Parameter-group options").
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import Head
from cmp.api.hookspecs import Register
from cmp.api.params import PositiveInt


class MLP(Head):
    """Linear layers with BN and ReLU between them; optional BN after the last one."""

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, batch_norm: bool, last_batch_norm: bool,
        fixed_lr: bool = False,
    ) -> None:
        super().__init__()
        self.param_group_options: dict[str, Any] = {"fixed_lr": True} if fixed_lr else {}
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def mlp(
    in_dim: int,
    *,
    hidden_dim: PositiveInt = 512,
    out_dim: PositiveInt = 128,
    num_layers: PositiveInt = 2,
    batch_norm: bool = True,
    last_batch_norm: bool = False,
    fixed_lr: bool = False,
) -> MLP:
    """MLP head: (num_layers - 1) x [Linear, BN, ReLU], then Linear (SimCLR: 2 layers).

    `fixed_lr`: train its parameters at the optimizer's initial learning rate, with no
    warm-up or decay (SimSiam's predictor).
    """
    return MLP(in_dim, hidden_dim, out_dim, num_layers, batch_norm, last_batch_norm, fixed_lr)


class Identity(Head):
    """No head: the representation itself is compared."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        return x


def identity(in_dim: int) -> Identity:
    """No projection head: compare the encoder's representations directly."""
    return Identity(in_dim)


@hookimpl
def cmp_register_projection_heads(register: Register) -> None:
    register("mlp", mlp)
    register("identity", identity)
