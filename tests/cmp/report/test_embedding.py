"""Embedding maps: the cell saves a sample of test features only when asked, the report draws the map from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cmp.api.contracts import Features
from cmp.cli import main
from cmp.evaluation.features import save_embedding_sample
from cmp.report.embedding import tsne
from plugins.evaluators import embedding_map, knn

RECIPE = """\
name: maps
data: {dataset: digits}
train: {epochs: 1, batch_size: 128, seed: 0, threads: 1}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
methods:
  simclr: {preset: simclr}
  moco: {preset: moco, negative_source: {name: queue, params: {size: 256}}}
baselines: []
"""


def test_the_sample_is_seeded_and_written_only_where_an_evaluator_kept_one(tmp_path: Path) -> None:
    x, y = torch.randn(50, 8), torch.arange(50) % 5
    sample = embedding_map(points=20)
    assert sample(Features(x, y, 5), Features(x, y, 5)) == {}  # measures nothing
    path = save_embedding_sample({"knn": knn(), "map": sample}, tmp_path)
    assert path == tmp_path / "features.npz"
    with np.load(path) as saved:
        rows = [int(np.flatnonzero((x.numpy() == f).all(axis=1))[0]) for f in saved["features"]]
        assert saved["features"].shape == (20, 8) and saved["labels"].tolist() == [r % 5 for r in rows]
    again = embedding_map(points=20)
    again(Features(x, y, 5), Features(x, y, 5))
    assert sample.sample is not None and again.sample is not None
    assert np.array_equal(sample.sample[1], again.sample[1])  # the same images every time
    assert save_embedding_sample({"knn": knn()}, tmp_path / "none") is None


def test_tsne_separates_two_far_apart_clusters() -> None:
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(size=(40, 6)) + 20 * np.eye(6)[0], rng.normal(size=(40, 6)) + 20 * np.eye(6)[1]])
    points = tsne(features)
    assert points.shape == (80, 2)
    a, b = points[:40].mean(axis=0), points[40:].mean(axis=0)
    spread = max(points[:40].std(axis=0).max(), points[40:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 3 * spread


def test_cells_save_features_when_asked_and_the_html_report_shows_the_maps(tmp_path: Path) -> None:
    recipe = tmp_path / "maps.yaml"
    recipe.write_text(RECIPE + "eval: {knn: {k: 20}, embedding_map: {points: 200}}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 0
    saved = sorted((tmp_path / "runs" / "maps").glob("*/features.npz"))
    assert len(saved) == 2
    with np.load(saved[0]) as data:
        assert data["features"].shape[0] == 200 and data["labels"].shape == (200,)
    page = (tmp_path / "reports" / "maps" / "report.html").read_text()
    assert "<h2>Embedding maps</h2>" in page and "t-SNE maps (scikit-learn) of 200 test images" in page
    # without the key: no file, no section
    plain = tmp_path / "plain.yaml"
    plain.write_text(RECIPE.replace("name: maps", "name: plain") + "eval: {knn: {k: 20}}\n")
    assert main(["run", str(plain), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 0
    assert not list((tmp_path / "runs" / "plain").glob("*/features.npz"))
    assert "Embedding maps" not in (tmp_path / "reports" / "plain" / "report.html").read_text()
