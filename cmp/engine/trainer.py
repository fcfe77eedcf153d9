"""The training loop: epochs of batches, from images on the device or from a batch source.

Per step: take a batch, augment it, compute the objective's loss, step the optimizer
and the schedule, let the objective's components update. The objective is a method's
`Learner` or anything with the same three calls (the supervised baseline's classifier),
so every network cmp trains goes through this one loop, precision and checkpoint path. The loss is read back to the host
only every `log_every` steps (and at epoch ends), so a GPU is never made to wait each
step. Checkpoints are taken at every epoch end and every `checkpoint_seconds` of
training, with everything needed to resume to the same result (including mid-epoch).

Where batches come from: a data set held in memory is a uint8 tensor on the device,
indexed with the epoch's permutation (no copy but the batch itself); a streamed data set
is a `BatchSource` (`cmp.engine.batch_source`) asked for the same permutation's batches.
The loop's helpers live beside it: the random state a checkpoint holds
(`cmp.engine.random_state`) and the collapse check (`cmp.engine.collapse`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

__all__ = ["BatchSource", "Objective", "Position", "SourceBatch", "TrainConfig", "TrainSummary", "Trainer"]

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from cmp.api.contracts import Augmentation
from cmp.distributed import SINGLE, Processes, broadcast, mean_across
from cmp.engine.batch_source import BatchSource, SourceBatch, check_batch_sizes, on_device
from cmp.engine.checkpoint import save_checkpoint
from cmp.engine.collapse import check_collapse, embedding_std
from cmp.engine.grad_cache import cached_step
from cmp.engine.learner import StepOutput
from cmp.engine.random_state import random_state, restore_random_state
from cmp.errors import CmpError, RunFailed


class Objective(Protocol):
    """What the trainer trains: a module whose call gives a step's loss.

    `__call__(views, ids)` -> `StepOutput` (ids: the batch's data-set indices);
    `after_step(batch, progress)` after each optimizer step; `stats()` scalars to log.
    """

    def __call__(self, views: list[Tensor], ids: Tensor) -> StepOutput: ...

    def after_step(self, batch: Any, progress: float) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class TrainConfig:
    """The loop's settings (from the recipe's `train` section)."""

    epochs: int
    batch_size: int
    log_every: int = 10
    eval_every: int = 0
    precision: str = "fp32"
    channels_last: bool = False
    checkpoint_seconds: float = 600.0
    collapse_std: float = 0.0
    micro_batch: int | None = None
    max_steps: int | None = None
    """Stop after this many steps (a step-count budget; the last epoch is cut short)."""


@dataclass
class Position:
    """Where training stands; saved in checkpoints."""

    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    perm: Tensor | None = None
    epoch_loss_sum: float = 0.0
    train_seconds: float = 0.0
    loss_per_epoch: list[float] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainSummary:
    """What training measured."""

    steps: int
    images_seen: int
    train_seconds: float
    loss_per_epoch: list[float]
    eval_history: list[dict[str, float]]

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.train_seconds if self.train_seconds > 0 else 0.0


class Trainer:
    """Runs the loop for one learner; `hooks` is the plugin manager's hook relay.

    `images`: the training images as a uint8 tensor on the training device, or a
    `BatchSource` (training then runs on `device`, default the generator's device).
    """

    def __init__(
        self,
        learner: Objective,
        augmentation: Augmentation,
        images: Tensor | BatchSource,
        optimizer: torch.optim.Optimizer,
        schedule: Any | None,
        generator: torch.Generator,
        config: TrainConfig,
        run: Any,
        hooks: Any,
        evaluate: Callable[[int], dict[str, float]] | None = None,
        checkpoint_path: Path | None = None,
        processes: Processes = SINGLE,
        augment_generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> None:
        if config.batch_size % processes.world_size:
            raise CmpError(
                f"batch size {config.batch_size} does not divide among {processes.world_size} processes",
                where="train.batch_size",
            )
        self.learner = learner
        self.augmentation = augmentation
        self.images = images
        self.optimizer = optimizer
        self.schedule = schedule
        self.generator = generator
        self.config = config
        self.run = run
        self.hooks = hooks
        self.evaluate = evaluate
        self.checkpoint_path = checkpoint_path
        self.processes = processes
        self.augment_generator = augment_generator or generator
        self.local_batch = config.batch_size // processes.world_size
        self.source: BatchSource | None = None
        if isinstance(images, Tensor):
            self.device = images.device
            self.count = images.shape[0]
        else:
            check_batch_sizes(images, config.batch_size, self.local_batch)
            self.source = images
            self.device = torch.device(device) if device is not None else generator.device
            self.count = len(images)
        self.forward = self._distributed(learner)
        self.steps_per_epoch = self.count // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.position = Position()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.autocast_dtype = dtype
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")

    def _distributed(self, learner: Objective) -> Any:
        """What a step calls: the learner, wrapped for gradient averaging when several
        processes train a learner with trainable parameters."""
        if self.processes.distributed and any(p.requires_grad for p in learner.parameters()):  # type: ignore[attr-defined]  # an Objective is an nn.Module at run time; the Protocol does not say so
            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(learner, device_ids=ids)
        return learner

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def state_dict(self) -> dict[str, Any]:
        p = self.position
        state: dict[str, Any] = {
            "learner": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else {},
            "scaler": self.scaler.state_dict(),
            **random_state(self.generator, self.augment_generator, self.device, self.processes),
            "world_size": self.processes.world_size,
            "position": {
                "epoch": p.epoch, "step": p.step, "step_in_epoch": p.step_in_epoch,
                "epoch_loss_sum": p.epoch_loss_sum, "train_seconds": p.train_seconds,
                "loss_per_epoch": list(p.loss_per_epoch), "eval_history": list(p.eval_history),
            },
        }
        if p.perm is not None:
            state["perm"] = p.perm.cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_by = int(state.get("world_size", 1))
        if saved_by != self.processes.world_size:
            raise CmpError(
                f"the checkpoint was written by {saved_by} process(es); resume it with as many "
                f"(cmp run --nproc {saved_by}), or delete it to start again",
                where=str(self.checkpoint_path),
            )
        self.learner.load_state_dict(state["learner"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state["schedule"]:
            self.schedule.load_state_dict(state["schedule"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        restore_random_state(state, self.generator, self.augment_generator, self.device, self.processes)
        pos = state["position"]
        self.position = Position(
            epoch=int(pos["epoch"]), step=int(pos["step"]), step_in_epoch=int(pos["step_in_epoch"]),
            perm=state["perm"].to(self.device) if "perm" in state else None,
            epoch_loss_sum=float(pos["epoch_loss_sum"]), train_seconds=float(pos["train_seconds"]),
            loss_per_epoch=list(pos["loss_per_epoch"]), eval_history=list(pos["eval_history"]),
        )

    def save(self, extra: dict[str, Any]) -> None:
        """Checkpoint (every process takes part; the main one writes the file)."""
        if self.checkpoint_path is not None:
            state = self.state_dict()
            if self.processes.is_main:
                save_checkpoint(self.checkpoint_path, {**extra, **state})

    def _check(self, value: float, where: str) -> None:
        if not math.isfinite(value):
            raise RunFailed(f"loss became {value} {where}")

    def _train_step(self, x: Tensor, ids: Tensor) -> tuple[Tensor, Any]:
        with self._autocast():
            views = self.augmentation(x, self.augment_generator)
            if self.config.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        micro = self.config.micro_batch
        self.optimizer.zero_grad(set_to_none=True)
        if micro is not None and micro < x.shape[0]:
            out = cached_step(self.learner, self.forward, views, ids, micro, self._autocast, self.scaler.scale)  # type: ignore[arg-type]  # GradScaler.scale is overloaded (tensor or list); cached_step passes tensors
        else:
            with self._autocast():
                out = self.forward(views, ids)
            self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.schedule is not None:
            self.schedule.step()
        return out.loss.detach(), out.batch

    def fit(self, checkpoint_extra: dict[str, Any] | None = None) -> TrainSummary:
        """Train from the current position to the last epoch."""
        cfg, p = self.config, self.position
        extra = checkpoint_extra or {}
        bsz = cfg.batch_size
        last_save = time.perf_counter()
        while p.epoch < cfg.epochs:
            if p.perm is None:
                p.perm = torch.randperm(self.count, generator=self.generator, device=self.device)
                p.step_in_epoch, p.epoch_loss_sum = 0, 0.0
            loss_sum = torch.zeros((), device=self.device)
            started = time.perf_counter()
            timed_from, timed_seconds = p.step_in_epoch, 0.0  # this fit's part of the epoch (a resumed one starts mid-way)
            stream = self._stream(p) if self.source is not None else None
            while p.step_in_epoch < self.steps_per_epoch and p.step < self.total_steps:
                if stream is None:  # in memory: index the batch on the device
                    i = p.step_in_epoch
                    ids = p.perm[i * bsz : (i + 1) * bsz][self._mine]
                    x = cast(Tensor, self.images)[ids]  # no source: the images are a tensor
                else:
                    x, ids = next(stream)
                loss, batch = self._train_step(x, ids)
                p.step += 1
                p.step_in_epoch += 1
                self.learner.after_step(batch, p.step / self.total_steps)
                loss_sum += loss
                if p.step % cfg.log_every == 0 or p.step_in_epoch == self.steps_per_epoch or p.step == self.total_steps:
                    self._log(loss, batch, p)
                if self._checkpoint_due(last_save, p) and p.step_in_epoch < self.steps_per_epoch:
                    elapsed = time.perf_counter() - started
                    p.train_seconds += elapsed
                    timed_seconds += elapsed
                    p.epoch_loss_sum += mean_across(loss_sum, self.processes).item()
                    loss_sum.zero_()
                    self.save(extra)
                    started = last_save = time.perf_counter()
            epoch_loss = (p.epoch_loss_sum + mean_across(loss_sum, self.processes).item()) / max(1, p.step_in_epoch)
            elapsed = time.perf_counter() - started
            p.train_seconds += elapsed
            timed_seconds += elapsed
            self._check(epoch_loss, f"in epoch {p.epoch + 1}")
            p.loss_per_epoch.append(epoch_loss)
            p.epoch += 1
            p.perm = None
            self.hooks.cmp_epoch_end(
                run=self.run, epoch=p.epoch,
                # the steps trained between `started`s over their time, checkpoint writing left out
                metrics={"loss": epoch_loss, "images_per_s": (p.step_in_epoch - timed_from) * bsz / max(1e-9, timed_seconds)},
            )
            if self.evaluate is not None and cfg.eval_every and p.epoch % cfg.eval_every == 0 and p.epoch < cfg.epochs:
                results = self.evaluate(p.epoch)
                p.eval_history.append({"epoch": p.epoch, **results})
            self.save(extra)
            last_save = time.perf_counter()
        return TrainSummary(
            steps=p.step, images_seen=p.step * bsz, train_seconds=p.train_seconds,
            loss_per_epoch=list(p.loss_per_epoch), eval_history=list(p.eval_history),
        )

    def _stream(self, p: Position) -> Iterator[tuple[Tensor, Tensor]]:
        """The source's batches of this epoch from the current step, moved to the device."""
        assert self.source is not None and p.perm is not None
        yield from on_device(self.source.epoch(p.epoch, p.perm.cpu(), p.step_in_epoch), self.device)
        raise RunFailed(f"the batch source ended epoch {p.epoch + 1} at step {p.step_in_epoch} of {self.steps_per_epoch}")

    @property
    def _mine(self) -> slice:
        """This process's rows of each global batch."""
        r, b = self.processes.rank, self.local_batch
        return slice(r * b, (r + 1) * b)

    def _checkpoint_due(self, last_save: float, p: Position) -> bool:
        """Time for a mid-epoch checkpoint; with several processes, rank 0 decides at log steps."""
        due = time.perf_counter() - last_save > self.config.checkpoint_seconds
        if not self.processes.distributed:
            return due
        if p.step % self.config.log_every:
            return False
        return bool(broadcast(due, self.processes))

    def _log(self, loss: Tensor, batch: Any, p: Position) -> None:
        value = mean_across(loss, self.processes).item()
        self._check(value, f"at step {p.step} (epoch {p.epoch + 1})")
        metrics = {"loss": value, "lr": float(self.optimizer.param_groups[0]["lr"]), **self.learner.stats()}
        if self.config.collapse_std > 0 and batch is not None:
            metrics["embedding_std"] = embedding_std(batch.anchors, self.processes)
            check_collapse(metrics["embedding_std"], self.config.collapse_std, p.step)
        self.hooks.cmp_step_end(run=self.run, step=p.step, metrics=metrics)
        self.hooks.cmp_progress(run=self.run, task="train", done=p.step, total=self.total_steps)
