"""Embedding maps: a 2-D t-SNE map of each method's test features, coloured by class.

A cell writes a fixed sample of its test features and labels (`features.npz`) only when its
recipe asks (`eval: {embedding_map: {points: 1000}}`); the map is computed here, at report
time, so it costs no cell time. One map per group, from its first seed that saved a sample.
scikit-learn's t-SNE (already a dependency; `umap-learn` would be a new one) on the
L2-normalised features, the geometry the kNN evaluates, initialised by PCA with a fixed
seed, so the same file gives the same map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmp.api.results import EMBEDDING_FILE, RunResult
from cmp.report.groups import Group


@dataclass(frozen=True)
class EmbeddingMap:
    """One group's map: 2-D points and their classes, from which seed."""

    label: str
    seed: int | None
    points: np.ndarray
    labels: np.ndarray


def sample_file(result: RunResult, runs_dir: Path) -> Path:
    """Where a cell's sample is: its run directory `<runs_dir>/<method>-<key>/features.npz`."""
    return runs_dir / f"{result.method}-{result.key}" / EMBEDDING_FILE


def embedding_maps(groups: Sequence[Group], runs_dir: Path) -> list[EmbeddingMap]:
    """A map per finished group whose first seed (by seed) saved a sample; none for the others."""
    maps = []
    for g in groups:
        for r in sorted(g.ok, key=lambda r: (r.config.get("train") or {}).get("seed", 0)):
            path = sample_file(r, runs_dir)
            if path.is_file():
                with np.load(path) as saved:
                    features, labels = saved["features"], saved["labels"]
                maps.append(EmbeddingMap(g.label, (r.config.get("train") or {}).get("seed"), tsne(features), labels))
                break
    return maps


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """The (N, 2) t-SNE of L2-normalised `features` (perplexity 30, or less for few points)."""
    from sklearn.manifold import TSNE

    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3)))
    return np.asarray(TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x))


__all__ = ["EmbeddingMap", "embedding_maps", "sample_file", "tsne"]
