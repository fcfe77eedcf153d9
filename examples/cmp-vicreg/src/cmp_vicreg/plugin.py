"""The plugin module cmp loads through the `cmp` entry point: VICReg's loss and preset."""

from __future__ import annotations

from cmp.api import MethodPreset, Register, hookimpl
from cmp_vicreg.loss import vicreg

VICREG = MethodPreset(
    {
        "augmentation": "byol",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 2048, "out_dim": 2048, "num_layers": 3}},
        "predictor": None,
        "target": "shared",
        "negative_source": "none",
        "loss": "vicreg",
        "optimizer": {"name": "lars", "params": {"lr": 0.2, "lr_scaling": "linear", "weight_decay": 1e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 1}},
        "pairs": "one_way",
        "joint_forward": False,
    },
    "VICReg (Bardes et al. 2022): shared weights, 3-layer expander, variance-invariance-covariance loss, no negatives.",
)
"""VICReg as slot choices. The loss is symmetric in its two branches already, so one pair
(view 0 as Z, view 1 as Z') is the whole loss; `symmetric` pairs would stack both views
into each branch and mix them in the variance and covariance estimates."""


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("vicreg", vicreg)


@hookimpl
def cmp_register_methods(register: Register) -> None:
    register("vicreg", VICREG)
