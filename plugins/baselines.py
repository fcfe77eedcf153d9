"""Baselines: raw pixels, a randomly initialised encoder, and a supervised encoder.

Each is evaluated exactly as the methods are (same features protocol, same evaluators).
The supervised encoder has the cell's architecture and trains with cross-entropy on one
augmented view per image through the engine's `Trainer`, with the cell's optimizer,
schedule, epochs, batch size and precision: the same budget, the same loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api import BaselineContext, Encoder, Register, StepOutput
from cmp.weights import without_weights

STREAMED_SIDE = 32
"""Side raw pixels are downscaled to on a streamed data set: 224 x 224 x 3 inputs would be
150 528 features per image, too many for the feature bank of a large data set."""


class Flatten(nn.Module):
    """Raw pixels as features: the evaluation input, flattened to (N, C*H*W)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


class Downscaled(nn.Module):
    """The evaluation input resized to side x side (antialiased), flattened to (N, C*side*side)."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.side or x.shape[-2] != self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", antialias=True, align_corners=False)
        return x.flatten(1)


class RawPixels:
    """The evaluation input itself (resized and normalised), as the features; on a streamed
    data set downscaled to `STREAMED_SIDE` pixels a side (said in the label)."""

    def side(self, context: BaselineContext) -> int | None:
        return min(STREAMED_SIDE, context.info.height) if context.streamed else None

    def depends_on(self, context: BaselineContext) -> dict[str, Any]:
        side = self.side(context)
        return {"input": context.input_shape(), **({"side": side} if side is not None else {})}

    def label(self, context: BaselineContext) -> str:
        side = self.side(context)
        return "raw_pixels" if side is None else f"raw_pixels ({side}x{side})"

    def representation(self, context: BaselineContext) -> nn.Module:
        side = self.side(context)
        return Flatten() if side is None else Downscaled(side)


class RandomInit:
    """The cell's encoder, initialised with the cell's seed and never trained: without
    the weights file it may name (the same architecture, its weights random)."""

    def depends_on(self, context: BaselineContext) -> dict[str, Any]:
        encoder = context.config["parts"]["encoder"]
        return {"input": context.input_shape(), "encoder": {**encoder, "params": without_weights(encoder["params"])},
                "seed": context.cell.train.seed}

    def label(self, context: BaselineContext) -> str:
        encoder = context.cell.part("encoder")
        arch = encoder.params.get("arch")  # torchvision's, timm's: which of their models
        return f"random_init ({encoder.name}{f' {arch}' if arch else ''})"

    def representation(self, context: BaselineContext) -> nn.Module:
        return context.build_part("encoder", without_weights(context.cell.part("encoder").params))


class SupervisedObjective(nn.Module):
    """Cross-entropy of a linear classifier on the encoder, on the first view of each image."""

    labels: Tensor

    def __init__(self, encoder: Encoder, num_classes: int, labels: Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.feature_dim, num_classes)
        self.register_buffer("labels", labels, persistent=False)

    def forward(self, views: list[Tensor], ids: Tensor) -> StepOutput:
        logits = self.classifier(self.encoder(views[0]))
        return StepOutput(F.cross_entropy(logits.float(), self.labels[ids]), None)

    def after_step(self, batch: Any, progress: float) -> None:
        """Nothing to update besides the optimizer's step."""

    def stats(self) -> dict[str, float]:
        return {}


class Supervised:
    """The cell's encoder trained with labels, on the cell's budget: an upper reference."""

    reference = "ceiling"
    trains = True

    def depends_on(self, context: BaselineContext) -> dict[str, Any]:
        config = context.config
        train = context.cell.train
        return {
            "encoder": config["parts"]["encoder"], "augmentation": config["parts"]["augmentation"],
            "optimizer": context.effective_optimizer(), "seed": train.seed,
            "train": {"batch_size": train.batch_size, "precision": train.precision, "channels_last": train.channels_last,
                      **({"steps": train.steps} if train.steps else {"epochs": train.epochs})},
        }

    def label(self, context: BaselineContext) -> str:  # trained at the cell's batch size and budget: one row per size
        train = context.cell.train
        budget = f", {train.steps} steps" if train.steps else ""
        return f"supervised ({context.cell.part('encoder').name}, batch {train.batch_size}{budget})"

    def representation(self, context: BaselineContext) -> nn.Module:
        encoder = context.build_part("encoder")
        splits = context.splits
        objective = SupervisedObjective(encoder, splits.num_classes, splits.train_labels).to(context.device)
        if context.cell.train.channels_last:
            objective.to(memory_format=torch.channels_last)
        context.train(objective, context.training_images, "supervised")
        return encoder


def raw_pixels() -> RawPixels:
    """Raw pixels: the resized, normalised evaluation input as features."""
    return RawPixels()


def random_init() -> RandomInit:
    """The cell's encoder with random weights (the cell's seed), never trained."""
    return RandomInit()


def supervised() -> Supervised:
    """The cell's encoder trained with cross-entropy on labels, on the cell's budget."""
    return Supervised()


@hookimpl
def cmp_register_baselines(register: Register) -> None:
    register("raw_pixels", raw_pixels)
    register("random_init", random_init)
    register("supervised", supervised)
