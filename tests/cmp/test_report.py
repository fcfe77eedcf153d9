"""The report generator on synthetic results: values, intervals, plots, failures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cmp.report import group_results, write_report
from cmp.stats import estimate
from cmp.summary import summary_table


def cell(method: str, seed: int, batch: int, knn: float, loss: str = "nt_xent", negatives: str = "in_batch",
         status: str = "ok", reason: str | None = None) -> dict[str, Any]:
    return {
        "recipe": "synthetic", "method": method, "cell": f"{method}[b={batch},s={seed},l={loss}]",
        "key": f"{method}{seed}{batch}{loss}", "status": status, "reason": reason,
        "sweep": {"train.batch_size": batch, "loss.name": loss, "train.seed": seed},
        "config": {"train": {"batch_size": batch, "seed": seed, "epochs": 2},
                   "parts": {"loss": {"name": loss, "params": {}}, "negative_source": {"name": negatives, "params": {}}}},
        "metrics": {"knn_top1": knn, "linear_top1": knn + 0.05} if status == "ok" else {},
        "train": {"train_time_s": 10.0 + seed, "images_per_s": 1000.0, "loss_per_epoch": [5.0, 4.0 - 0.1 * seed],
                  "batch_size": batch, "final_loss": 4.0},
        "eval_history": [{"epoch": 1, "knn_top1": knn - 0.1}, {"epoch": 2, "knn_top1": knn}],
        "peak_memory_mb": 100.0, "wall_time_s": 12.0,
    }


@pytest.fixture
def synthetic() -> list[dict[str, Any]]:
    results = []
    for method, negatives, base in (("simclr", "in_batch", 0.80), ("moco", "queue", 0.70)):
        for batch, bonus in ((64, 0.0), (128, 0.01)):
            for seed, delta in enumerate((0.0, 0.02, 0.04)):
                results.append(cell(method, seed, batch, base + bonus + delta, negatives=negatives))
        for seed in range(3):
            results.append(cell(method, seed, 64, 0.5 + 0.01 * seed, loss="margin_triplet", negatives=negatives))
    results.append(cell("moco", 9, 256, 0.0, status="failed", reason="loss became nan at step 3 (epoch 1)"))
    return results


def test_interval_is_the_student_t_interval() -> None:
    e = estimate([0.80, 0.82, 0.84])
    assert e.mean == pytest.approx(0.82)
    assert e.half_width == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))
    assert e.format() == "82.00 ± 4.97"
    assert estimate([0.5]).format() == "50.00"


def test_groups_pool_seeds_only(synthetic: list[dict[str, Any]]) -> None:
    groups = group_results(synthetic)
    simclr_64 = next(g for g in groups if g.method == "simclr" and g.settings == {"train.batch_size": 64, "loss.name": "nt_xent"})
    assert len(simclr_64.ok) == 3
    assert simclr_64.metric("knn_top1").mean == pytest.approx(0.82)  # type: ignore[union-attr]


def test_report_files_tables_plots_and_failures(tmp_path: Path, synthetic: list[dict[str, Any]]) -> None:
    baselines = [
        {"label": "raw_pixels", "metrics": {"knn_top1": 0.75, "linear_top1": 0.8}, "status": "ok"},
        {"label": "random_init (convnet)", "metrics": {"knn_top1": 0.6, "linear_top1": 0.7}, "status": "ok", "seed": 0},
        {"label": "random_init (convnet)", "metrics": {"knn_top1": 0.62, "linear_top1": 0.72}, "status": "ok", "seed": 1},
    ]
    invocation = {"command": "cmp run recipes/synthetic.yaml", "environment": {"device_name": "test cpu", "cmp": "0", "torch": "x"}}
    paths = write_report("synthetic", synthetic, baselines, tmp_path / "out", invocation, "A synthetic report.")
    md = paths["markdown"].read_text()
    assert "| simclr (batch_size=64, loss=nt_xent) | 3 | 82.00 ± 4.97 | 87.00 ± 4.97 |" in md
    assert "| baseline: random_init (convnet) | 2 | 61.00 ± 12.71 |" in md
    assert "`cmp run recipes/synthetic.yaml`" in md
    # loss table: rows are losses, columns the method and its negative source
    assert "| loss | moco (queue) | simclr (in_batch) |" in md
    assert "| margin_triplet | 51.00 ± 2.48 | 51.00 ± 2.48 |" in md
    assert "## Failed cells" in md and "loss became nan at step 3 (epoch 1)" in md
    for png in ("batch_size.png", "curves.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "batch_size.png" not in page
    assert "<td>82.00 ± 4.97</td>" in page
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == len(synthetic) and {r["status"] for r in rows} == {"ok", "failed"}
    summary = json.loads(paths["json"].read_text())
    assert len(summary["cells"]) == len(synthetic)


def test_no_batch_size_figure_without_a_batch_size_sweep(tmp_path: Path) -> None:
    results = [cell("simclr", s, 64, 0.8 + 0.01 * s) for s in range(2)]
    write_report("one", results, [], tmp_path)
    assert not (tmp_path / "batch_size.png").exists()
    assert "Losses and negative sources" not in (tmp_path / "report.md").read_text()


def test_terminal_summary_names_the_best_cell_and_its_margins() -> None:
    results = [
        {"cell": "simclr", "status": "ok", "metrics": {"knn_top1": 0.85}},
        {"cell": "moco", "status": "ok", "metrics": {"knn_top1": 0.83}},
        {"cell": "broken", "status": "failed", "reason": "NaN loss", "metrics": {"knn_top1": 0.99}},
    ]
    baselines = [{"label": "raw_pixels", "metrics": {"knn_top1": 0.8175}}]
    table = summary_table(results, baselines)
    assert "best knn_top1: simclr 85.00 (+3.25 vs raw_pixels)" in table
    assert "broken: NaN loss" in table
