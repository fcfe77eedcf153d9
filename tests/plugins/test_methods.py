"""Each built-in method, trained briefly end to end, beats the random-init encoder's kNN.

Short runs take a lower EMA momentum (0.95): with 0.99 a target barely moves in 300 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmp.cli import main

METHODS = """\
name: short_methods
data: {dataset: fashion_mnist, subset: 4000, test_subset: 1000}
train: {epochs: 5, batch_size: 64, seed: 0, log_every: 10}
defaults:
  encoder: {name: convnet, params: {widths: [16, 32, 64]}}
  augmentation: {name: simclr, params: {crop_scale: [0.3, 1.0]}}
  optimizer: {name: sgd, params: {lr: 0.3, momentum: 0.9, weight_decay: 5.0e-4}}
  schedule: {name: cosine}
methods:
  moco:
    preset: moco
    target: {name: momentum, params: {momentum: 0.95, bn_shuffle_groups: 4}}
    negative_source: {name: queue, params: {size: 1024}}
  byol:
    preset: byol
    augmentation: {name: byol, params: {crop_scale: [0.3, 1.0]}}
    projection_head: {name: mlp, params: {hidden_dim: 256, out_dim: 64}}
    predictor: {name: mlp, params: {hidden_dim: 256, out_dim: 64}}
    target: {name: momentum, params: {momentum: 0.95, schedule: cosine}}
eval:
  knn: {k: 50, temperature: 0.1}
baselines: [random_init]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("methods")
    recipe = tmp / "methods.yaml"
    recipe.write_text(METHODS)
    out = tmp / "runs"
    assert main(["run", str(recipe), "--out", str(out), "--reports", str(tmp / "reports")]) == 0
    return out


@pytest.mark.parametrize("method", ["moco", "byol"])
def test_method_beats_the_random_encoder(finished: Path, method: str) -> None:
    results = [json.loads(p.read_text()) for p in finished.glob("short_methods/*/result.json")]
    (result,) = [r for r in results if r["method"] == method]
    (baseline_path,) = (finished / "baselines").glob("random_init-*.json")
    baseline = json.loads(baseline_path.read_text())["metrics"]["knn_top1"]
    assert result["metrics"]["knn_top1"] > baseline + 0.01, (method, result["metrics"], baseline)
