"""Method presets: each method is a set of slot choices, nothing more."""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.contracts import MethodPreset
from cmp.api.hookspecs import Register

SIMCLR = MethodPreset(
    {
        "augmentation": "simclr",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 512, "out_dim": 128}},
        "predictor": None,
        "target": "shared",
        "negative_source": "in_batch",
        "loss": {"name": "nt_xent", "params": {"temperature": 0.5}},
        "optimizer": {"name": "lars", "params": {"lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 1}},
        "pairs": "symmetric",
        "joint_forward": True,
    },
    "SimCLR (Chen et al. 2020): shared weights, 2N-2 in-batch negatives, NT-Xent, LARS.",
)


MOCO = MethodPreset(
    {
        "augmentation": "simclr",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 512, "out_dim": 128}},
        "predictor": None,
        "target": {"name": "momentum", "params": {"momentum": 0.99, "bn_shuffle_groups": 4}},
        "negative_source": {"name": "queue", "params": {"size": 4096}},
        "loss": {"name": "nt_xent", "params": {"temperature": 0.2}},
        "optimizer": {"name": "sgd", "params": {"lr": 0.06, "lr_scaling": "linear", "weight_decay": 5e-4}},
        "schedule": "cosine",
        "pairs": "one_way",
        "joint_forward": False,
    },
    "MoCo v2 (Chen et al. 2020): momentum key encoder, queue of 4096 keys, InfoNCE t=0.2.",
)

BYOL = MethodPreset(
    {
        "augmentation": "byol",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 1024, "out_dim": 256}},
        "predictor": {"name": "mlp", "params": {"hidden_dim": 1024, "out_dim": 256}},
        "target": {"name": "momentum", "params": {"momentum": 0.99, "schedule": "cosine"}},
        "negative_source": "none",
        "loss": "cosine_regression",
        "optimizer": {"name": "lars", "params": {"lr": 0.2, "lr_scaling": "linear", "weight_decay": 1.5e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 1}},
        "pairs": "symmetric",
        "joint_forward": False,
    },
    "BYOL (Grill et al. 2020): predictor, EMA target with tau 0.99 -> 1, 2 - 2 cos, no negatives.",
)


@hookimpl
def cmp_register_methods(register: Register) -> None:
    register("simclr", SIMCLR)
    register("moco", MOCO)
    register("byol", BYOL)
