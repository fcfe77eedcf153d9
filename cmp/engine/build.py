"""Building a cell's components from the slot table.

Each part of `cmp.api.slots.PARTS` is built in table order; its factory is told the
`BuildContext` attributes the part maps its arguments to (`told`), then the recipe's validated
parameters. The context derives what later parts need from the parts built so far
(the encoder's feature size, the online network, the embedding size...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cmp.api.contracts import DataInfo
from cmp.api.registry import Registry
from cmp.api.slots import PARTS, SLOTS
from cmp.config.cells import Cell, ResolvedChoice
from cmp.devices import resolve_device as resolve_device  # where the engine's modules have imported it from
from cmp.engine.learner import Learner, OnlineNetwork, cancel_frozen_gradients, param_groups, view_pairs
from cmp.errors import CmpError, PluginError
from cmp.nn import world_size


def build(registry: Registry, choice: ResolvedChoice, *context: Any) -> Any:
    """Build one component; a plugin's own exception becomes a `PluginError` naming it."""
    component = registry.get(choice.slot, choice.name)
    try:
        return component.build(*context, **choice.params)
    except CmpError:
        raise
    except Exception as exc:
        raise PluginError(
            f"building {SLOTS[choice.slot].noun} '{choice.name}' failed: {type(exc).__name__}: {exc}",
            where=f"{choice.where} ({component.provider})",
        ) from None


@dataclass
class BuildContext:
    """What factories are told, derived from the cell, the data and the parts built so far."""

    data: DataInfo
    batch_size: int
    steps_per_epoch: int
    epochs: int
    built: dict[str, Any] = field(default_factory=dict)
    trainable: nn.Module | None = None
    max_steps: int | None = None
    """`train.steps` when the budget is a step count (the last epoch is then cut short)."""

    @property
    def total_steps(self) -> int:
        full = self.steps_per_epoch * self.epochs
        return full if self.max_steps is None else min(full, self.max_steps)

    @property
    def feature_dim(self) -> int:
        return int(self.built["encoder"].feature_dim)

    @property
    def head_dim(self) -> int:
        return int(self.built["projection_head"].out_dim)

    @property
    def embedding_dim(self) -> int:
        predictor = self.built.get("predictor")
        return int(predictor.out_dim if predictor is not None else self.head_dim)

    @property
    def online(self) -> OnlineNetwork:
        if "online" not in self.built:
            self.built["online"] = OnlineNetwork(self.built["encoder"], self.built["projection_head"])
        return self.built["online"]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        assert self.trainable is not None, "the trainable module is assembled before the optimizer"
        return param_groups(self.trainable)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.built["optimizer"]


def build_parts(cell: Cell, registry: Registry, context: BuildContext, keys: Iterable[str]) -> None:
    """Build the named parts in table order into `context.built` (None for one left out)."""
    wanted = set(keys)
    for key, part in PARTS.items():
        if key not in wanted:
            continue
        choice = cell.parts[key]
        context.built[key] = (
            None if choice is None else build(registry, choice, *(getattr(context, name) for name in part.told.values()))
        )


@dataclass
class Model:
    """The components of one cell, built and on the device."""

    augmentation: Any
    learner: Learner
    optimizer: torch.optim.Optimizer
    schedule: Any | None


def _check_chunks_reach_every_parameter(cell: Cell, learner: Learner) -> None:
    """Gradient caching with several processes averages, through DDP, the gradients of the
    chunked online network only: an objective with parameters of its own (SwAV's
    prototypes) would train them on this process's gradient alone, and DDP would wait for
    them. Refused before any work; in one process caching is exact for it."""
    micro, processes = cell.train.micro_batch, world_size()
    if micro is None or processes == 1 or micro >= cell.train.batch_size // processes or learner.objective is None:
        return
    own = [name for name, p in learner.objective.named_parameters() if p.requires_grad]
    if own:
        name = cell.part("objective").name
        raise CmpError(
            f"objective '{name}' has parameters of its own ({', '.join(own)}), which gradient caching does not "
            f"average across {processes} processes: leave train.micro_batch out, or train on one process",
            where="train.micro_batch",
        )


TRAINING_PARTS = ("optimizer", "schedule")
"""Parts built once the trainable module is assembled: they are told its parameters."""


def build_model(cell: Cell, registry: Registry, info: DataInfo, steps_per_epoch: int, device: torch.device) -> Model:
    """Seed, build every part of `cell` in table order, assemble the learner on `device`."""
    torch.manual_seed(cell.train.seed)
    epochs, total_steps = cell.train.budget(steps_per_epoch)
    context = BuildContext(info, cell.train.batch_size, steps_per_epoch, epochs, max_steps=total_steps)
    build_parts(cell, registry, context, [k for k in PARTS if k not in TRAINING_PARTS])
    built = context.built
    augmentation = built["augmentation"].to(device)
    try:
        pairs = view_pairs(cell.step.pairs, augmentation.num_views, getattr(augmentation, "global_views", 2))
    except ValueError as exc:
        raise CmpError(str(exc), where=f"methods.{cell.method}.pairs") from None
    learner = Learner(
        context.online, built["predictor"], built["target"], built["negative_source"], built["loss"],
        pairs, cell.step.joint_forward, built["objective"],
    ).to(device)
    _check_chunks_reach_every_parameter(cell, learner)
    if cell.train.sync_batchnorm and world_size() > 1:
        if device.type != "cuda":
            raise CmpError("SyncBatchNorm runs on CUDA GPUs only (PyTorch's DDP refuses it on the CPU)",
                           where="train.sync_batchnorm")
        learner = nn.SyncBatchNorm.convert_sync_batchnorm(learner)
    if cell.train.channels_last:
        learner.to(memory_format=torch.channels_last)
    if cell.train.compile:
        learner.online.compile()
    context.trainable = learner
    build_parts(cell, registry, context, TRAINING_PARTS)
    cancel_frozen_gradients(built["optimizer"], learner)
    return Model(augmentation, learner, built["optimizer"], built["schedule"])
