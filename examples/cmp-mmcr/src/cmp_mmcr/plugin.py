"""The plugin module cmp loads through the `cmp` entry point: MMCR's loss and preset."""

from __future__ import annotations

from cmp.api import MethodPreset, Register, hookimpl
from cmp_mmcr.loss import mmcr

MMCR = MethodPreset(
    {
        "augmentation": "byol",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 2048, "out_dim": 512, "num_layers": 2}},
        "predictor": None,
        "target": "shared",
        "negative_source": "none",
        "loss": "mmcr",
        "optimizer": {"name": "lars", "params": {"lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 1}},
        "pairs": "one_way",
        "joint_forward": False,
    },
    "MMCR (Yerxa et al. 2023): shared weights, two views, minus the nuclear norm of their centroids, no negatives.",
)
"""MMCR as slot choices. One pair (view 0 with view 1) gives the loss both views of every
image, which is all it needs to form the centroids; the optimizer, schedule and head
are cmp's usual ones, not tuned to the paper."""


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("mmcr", mmcr, one_pair=True)


@hookimpl
def cmp_register_methods(register: Register) -> None:
    register("mmcr", MMCR)
