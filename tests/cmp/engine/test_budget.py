"""Training budgets: a fixed step count (`train.steps`) and cheap evaluation during training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from cmp.cli import main
from cmp.config.recipe import TrainSection
from cmp.engine.build import BuildContext
from cmp.engine.cell_run import fixed_subset
from cmp.evaluation.splits import LabelledSplits

RECIPE = """\
name: budget
data: {{dataset: digits}}
train: {{epochs: 2, batch_size: 64, seed: 1, threads: 1, eval_every: 1{train}}}
defaults:
  encoder: {{name: convnet, params: {{widths: [8, 16]}}}}
  augmentation: {{name: simclr, params: {{crop_scale: [0.5, 1.0]}}}}
  optimizer: {{name: sgd, params: {{lr: 0.1}}}}
  schedule: {{name: cosine}}
  projection_head: {{name: mlp, params: {{hidden_dim: 32, out_dim: 16}}}}
methods:
  simclr: {{preset: simclr}}
eval: {{knn: {{k: 20}}, linear: {{max_iter: 20}}}}
baselines: []
"""


def run(tmp_path: Path, write_recipe: Callable[..., Path], train: str, name: str) -> dict:  # type: ignore[type-arg]
    recipe = write_recipe(RECIPE.format(train=train), name=f"{name}.yaml")
    out = tmp_path / name
    assert main(["run", str(recipe), "--out", str(out), "--reports", str(tmp_path / f"{name}-report")]) == 0
    (path,) = out.glob("budget/*/result.json")
    return json.loads(path.read_text())


def test_budget_is_epochs_or_a_step_count_cut_inside_the_last_epoch() -> None:
    assert TrainSection(epochs=3).budget(22) == (3, 66)
    assert TrainSection(epochs=3, steps=30).budget(22) == (2, 30)  # epochs follow the steps
    assert TrainSection(epochs=1, steps=44).budget(22) == (2, 44)
    assert TrainSection(steps=5).budget(22) == (1, 5)
    context = BuildContext(data=None, batch_size=64, steps_per_epoch=22, epochs=2, max_steps=30)  # type: ignore[arg-type]
    assert context.total_steps == 30
    assert BuildContext(data=None, batch_size=64, steps_per_epoch=22, epochs=2).total_steps == 44  # type: ignore[arg-type]


def test_a_step_budget_trains_exactly_that_many_steps(tmp_path: Path, write_recipe: Callable[..., Path]) -> None:
    result = run(tmp_path, write_recipe, ", steps: 30", "steps")
    # digits: 1 437 training images, 22 steps of 64 per epoch: 22 + 8 steps
    assert result["train"]["steps"] == 30
    assert result["train"]["images_seen"] == 30 * 64
    assert result["train"]["epochs"] == 2
    assert len(result["train"]["loss_per_epoch"]) == 2
    assert [h["epoch"] for h in result["eval_history"]] == [1, 2]


def test_evaluation_during_training_uses_the_subset_and_the_final_one_every_image(
    tmp_path: Path, write_recipe: Callable[..., Path]
) -> None:
    subset = run(tmp_path, write_recipe, ", eval_subset: 100", "subset")
    full = run(tmp_path, write_recipe, ", eval_subset: null", "full")
    # the same training either way: the evaluation does not touch the model or its random streams
    assert subset["train"]["loss_per_epoch"] == full["train"]["loss_per_epoch"]
    assert subset["metrics"] == full["metrics"]
    # without a subset the curve ends on the final metrics; with one, on the subset (kNN only)
    assert full["eval_history"][-1] == {"epoch": 2, **full["metrics"]}
    assert set(subset["eval_history"][-1]) == {"epoch", "knn_top1"}
    assert "linear_top1" in subset["metrics"]


def test_the_subset_is_fixed_and_independent_of_the_cell() -> None:
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    splits = LabelledSplits(images, torch.arange(50), images[:30], torch.arange(30), 50)
    a, b = fixed_subset(splits, 10), fixed_subset(splits, 10)
    assert a.train_images.shape[0] == a.test_images.shape[0] == 10
    assert torch.equal(a.train_labels, b.train_labels) and torch.equal(a.test_labels, b.test_labels)
    assert torch.equal(a.train_images.flatten().long(), a.train_labels)  # images and labels stay paired
    assert torch.equal(a.train_labels, a.train_labels.sort().values)  # in data-set order
    assert fixed_subset(splits, 50) is splits
    assert fixed_subset(splits, None) is splits
    partly = fixed_subset(splits, 40)  # the test split holds fewer: all of it
    assert partly.train_images.shape[0] == 40 and partly.test_images.shape[0] == 30
