"""Projection heads and predictors: MLPs with configurable width, depth and BatchNorm, and
DINO's head (an MLP to a bottleneck, then a weight-normalised layer to many outputs).

A head built with `fixed_lr` declares `param_group_options = {"fixed_lr": True}`: the
engine puts its parameters in optimizer groups of their own, whose learning rate the
schedules leave at its initial value (SimSiam's predictor; docs/plugin-reference.md,
"Parameter-group options").
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import Head
from cmp.api.hookspecs import Register
from cmp.api.params import Fraction, PositiveInt


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


class DINOHead(Head):
    """DINO's head (Caron et al. 2021; official vision_transformer.py `DINOHead`): an MLP
    with GELUs to a bottleneck, L2-normalised, then a weight-normalised linear layer with
    its gain fixed to 1 (`norm_last_layer`, the default): its weight's rows are unit
    vectors, the gradient flowing through that normalisation. The last layer is left
    untouched (its gradient dropped) while progress < `freeze_until`, as the code's
    `cancel_gradients_last_layer` does for the first epoch.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, num_layers: int, batch_norm: bool,
        freeze_until: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp.modules():  # the code's _init_weights: truncated normal, std 0.02, zero bias
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        """The weight norm's direction v (PyTorch's default init, as the code's); gain 1, fixed."""
        self.freeze_until = freeze_until
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last_layer.weight, dim=1))

    def frozen_parameters(self, progress: float) -> list[Tensor]:
        return [self.last_layer.weight] if progress < self.freeze_until else []


def dino_head(
    in_dim: int,
    *,
    hidden_dim: PositiveInt = 2048,
    bottleneck_dim: PositiveInt = 256,
    out_dim: PositiveInt = 65536,
    num_layers: PositiveInt = 3,
    batch_norm: bool = False,
    freeze_last_layer: Fraction = 0.01,
) -> DINOHead:
    """DINO's head: MLP (GELU) to a bottleneck, L2-normalised, weight-normalised last layer.

    Defaults are the official main_dino.py's: 3 layers, hidden 2048, bottleneck 256, 65536
    outputs, no BatchNorm; the last layer frozen for the first `freeze_last_layer` of the
    budget (the code's 1 epoch of its default 100).
    """
    return DINOHead(in_dim, hidden_dim, bottleneck_dim, out_dim, num_layers, batch_norm, freeze_last_layer)


@hookimpl
def cmp_register_projection_heads(register: Register) -> None:
    register("mlp", mlp)
    register("identity", identity)
    register("dino", dino_head)
