"""The plugin guide's stateful objective (`tests/helpers/centred_objective.py`) loads as a
plugin, trains in a recipe through `cmp run`, and keeps its centre in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from cmp.api.results import RunResult
from cmp.cli import main
from cmp.engine.checkpoint import load_checkpoint

RECIPE = """\
name: centred
data: {dataset: digits, subset: 256}
train: {epochs: 2, batch_size: 64, seed: 0, threads: 1, log_every: 2}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  optimizer: {name: adamw, params: {lr: 0.001}}
  augmentation: {name: simclr, params: {crop_scale: [0.5, 1.0]}}
methods:
  centred:
    preset: byol
    predictor: none
    projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
    loss: none
    objective: {name: centred_ce, params: {momentum: 0.8}}
eval: {knn: {k: 20}}
baselines: []
"""


def test_the_guides_objective_trains_and_checkpoints_its_centre(tmp_path: Path) -> None:
    recipe = tmp_path / "centred.yaml"
    recipe.write_text(RECIPE)
    args = ["-p", "tests.helpers.centred_objective", "run", str(recipe), "--out", str(tmp_path / "runs"),
            "--reports", str(tmp_path / "reports")]
    code = main(args)
    (path,) = (tmp_path / "runs").glob("centred/*/result.json")
    result = RunResult.from_json(path.read_text())
    assert code == 0 and result.ok, result.reason
    assert result.config["parts"]["objective"] == {"name": "centred_ce", "params": {"momentum": 0.8}}
    (checkpoint,) = path.parent.glob("checkpoint.pt")
    centre = load_checkpoint(checkpoint)["learner"]["objective.center"]
    assert centre.shape == (16,) and torch.isfinite(centre).all() and centre.abs().sum() > 0
