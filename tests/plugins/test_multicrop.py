"""Multi-crop is a preset of parts: 2 large + 4 small views, paired as data, no engine edit."""

from __future__ import annotations

from pathlib import Path

import torch

from cmp.api.contracts import DataInfo
from cmp.api.results import RunResult
from cmp.cli import main
from cmp.engine.learner import view_pairs
from cmp_plugins.augmentations import multicrop

INFO = DataInfo("toy", 1, 28, 28, 10, (0.5,), (0.25,))


def test_multicrop_makes_two_large_and_four_small_views() -> None:
    aug = multicrop(INFO, local_size=12)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    views = aug(images, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(5, 1, 28, 28)] * 2 + [(5, 1, 12, 12)] * 4
    assert aug.num_views == 6 and aug.global_views == 2
    assert aug.preprocess(images).shape == (5, 1, 28, 28)


def test_multicrop_pairs_every_view_with_each_other_large_view() -> None:
    pairs = view_pairs("multicrop", num_views=6, global_views=2)
    assert sorted(pairs) == sorted([(0, 1), (1, 0)] + [(i, j) for i in range(2, 6) for j in (0, 1)])
    assert view_pairs("symmetric", 6, 2) == [(0, 1), (1, 0)]
    assert view_pairs([[3, 0]], 6, 2) == [(3, 0)]


MULTICROP = """\
name: multicrop
data: {dataset: digits, subset: 512}
train: {epochs: 2, batch_size: 64, seed: 0, threads: 1}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
  optimizer: {name: sgd, params: {lr: 0.1}}
methods:
  simclr_multicrop:
    preset: simclr
    augmentation: {name: multicrop, params: {local_views: 4, local_size: 4, global_scale: [0.5, 1.0], local_scale: [0.2, 0.5]}}
    pairs: multicrop
eval: {knn: {k: 20}}
baselines: []
"""


def test_a_simclr_preset_with_two_plus_four_crops_trains(tmp_path: Path) -> None:
    recipe = tmp_path / "multicrop.yaml"
    recipe.write_text(MULTICROP)
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 0
    (path,) = (tmp_path / "runs").glob("multicrop/*/result.json")
    result = RunResult.from_json(path.read_text())
    assert result.ok and result.train is not None
    assert result.train.steps == 2 * (512 // 64)
    losses = result.train.loss_per_epoch
    assert len(losses) == 2 and losses[1] < losses[0], losses


def test_a_pair_naming_a_missing_view_is_one_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(MULTICROP.replace("pairs: multicrop", "pairs: [[0, 7]]"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 1
    (path,) = (tmp_path / "runs").glob("multicrop/*/result.json")
    reason = RunResult.from_json(path.read_text()).reason or ""
    assert "methods.simclr_multicrop.pairs" in reason and "names view 7" in reason and "makes 6 views" in reason
