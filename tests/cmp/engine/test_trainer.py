"""The loop's timing: an epoch's logged images/s is the images trained in the timed
interval over that interval, whether a mid-epoch checkpoint paused it or the epoch was
resumed from one. A fake clock makes every step last exactly one second and every
checkpoint a hundred, so the expected figures are exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import cmp.engine.trainer as trainer_module
from cmp.engine.learner import StepOutput
from cmp.engine.trainer import TrainConfig, Trainer

BATCH, STEPS = 4, 8
STEP_SECONDS, SAVE_SECONDS = 1.0, 100.0


class Clock:
    """`time` as the trainer sees it: only steps and checkpoints move it."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class OneSecondSteps(nn.Module):
    """An objective whose every step takes one second of the fake clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, views: list[Tensor], ids: Tensor) -> StepOutput:
        self.clock.now += STEP_SECONDS
        return StepOutput((self.weight * views[0].mean()) ** 2, None)

    def after_step(self, batch: Any, progress: float) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}


class EpochEnds:
    """A hook relay keeping what each epoch end reported; every other hook does nothing."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def cmp_epoch_end(self, run: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.metrics.append(metrics)

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: []


def two_views(images: Tensor, generator: torch.Generator) -> list[Tensor]:
    x = images.float() / 255
    return [x, x]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(trainer_module, "time", fake)
    return fake


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> list[dict[str, Any]]:
    """Every checkpoint the trainer writes, each costing a hundred seconds of the clock."""
    states: list[dict[str, Any]] = []

    def save(path: Path, state: dict[str, Any]) -> None:
        clock.now += SAVE_SECONDS
        states.append(state)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    return states


def trainer(clock: Clock, hooks: EpochEnds, checkpoint_seconds: float, tmp_path: Path) -> Trainer:
    images = torch.randint(0, 256, (STEPS * BATCH, 1, 4, 4), dtype=torch.uint8)
    objective = OneSecondSteps(clock)
    return Trainer(
        objective, two_views, images, torch.optim.SGD(objective.parameters(), lr=0.1), None,  # type: ignore[arg-type]
        torch.Generator().manual_seed(0),
        TrainConfig(epochs=1, batch_size=BATCH, log_every=100, checkpoint_seconds=checkpoint_seconds),
        None, hooks, checkpoint_path=tmp_path / "checkpoint.pt",
    )


def test_a_mid_epoch_checkpoint_does_not_inflate_the_epochs_images_per_second(
    clock: Clock, saved: list[dict[str, Any]], tmp_path: Path
) -> None:
    hooks = EpochEnds()
    summary = trainer(clock, hooks, checkpoint_seconds=2.5, tmp_path=tmp_path).fit()
    mid_epoch = [s for s in saved if s["position"]["step_in_epoch"] < STEPS]
    assert [s["position"]["step"] for s in mid_epoch] == [3, 6]  # the epoch was paused twice
    assert summary.train_seconds == STEPS * STEP_SECONDS  # checkpoints are not training time
    (epoch,) = hooks.metrics
    assert epoch["images_per_s"] == pytest.approx(BATCH / STEP_SECONDS)  # 8 steps in 8 s, not 8 in the last 2
    assert summary.images_per_second == pytest.approx(BATCH / STEP_SECONDS)


def test_a_resumed_epoch_counts_only_the_steps_trained_since_the_resume(
    clock: Clock, saved: list[dict[str, Any]], tmp_path: Path
) -> None:
    trainer(clock, EpochEnds(), checkpoint_seconds=2.5, tmp_path=tmp_path).fit()
    at_step_3 = saved[0]
    assert at_step_3["position"]["step_in_epoch"] == 3
    hooks = EpochEnds()
    resumed = trainer(clock, hooks, checkpoint_seconds=1e9, tmp_path=tmp_path)
    resumed.load_state_dict(at_step_3)
    summary = resumed.fit()
    (epoch,) = hooks.metrics
    assert epoch["images_per_s"] == pytest.approx(BATCH / STEP_SECONDS)  # 5 steps in 5 s, not 8 in 5
    assert summary.steps == STEPS and summary.train_seconds == STEPS * STEP_SECONDS  # 3 s before, 5 s after
    assert summary.images_per_second == pytest.approx(BATCH / STEP_SECONDS)
