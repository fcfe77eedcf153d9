"""The report generator on synthetic results: values, intervals, plots, failures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from cmp.api.results import BaselineResult, MetricInfo, RunResult
from cmp.report import group_results, write_report
from cmp.report.stats import estimate
from cmp.report.summary import summary_table
from tests.cmp.report.synthetic import baseline, cell, synthetic_results


@pytest.fixture
def synthetic() -> list[RunResult]:
    return synthetic_results()


def test_interval_is_the_student_t_interval() -> None:
    e = estimate([0.80, 0.82, 0.84])
    assert e.mean == pytest.approx(0.82)
    assert e.half_width == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))
    assert e.format() == "82.00 ± 4.97"
    assert estimate([0.5]).format() == "50.00"


def test_groups_pool_seeds_only(synthetic: list[RunResult]) -> None:
    groups = group_results(synthetic)
    simclr_64 = next(g for g in groups if g.method == "simclr" and g.settings == {"train.batch_size": 64, "loss.name": "nt_xent"})
    assert len(simclr_64.ok) == 3
    assert simclr_64.metric("knn_top1").mean == pytest.approx(0.82)  # type: ignore[union-attr]


def test_report_files_tables_plots_and_failures(tmp_path: Path, synthetic: list[RunResult]) -> None:
    baselines = [
        baseline("raw_pixels", 0.75, 0.8),
        baseline("random_init (convnet)", 0.6, 0.7, seed=0),
        baseline("random_init (convnet)", 0.62, 0.72, seed=1),
    ]
    invocation = {"command": "cmp run recipes/synthetic.yaml", "environment": {"device_name": "test cpu", "cmp": "0", "torch": "x"}}
    paths = write_report("synthetic", synthetic, baselines, tmp_path / "out", invocation, "A synthetic report.")
    md = paths["markdown"].read_text()
    assert "| run | seeds | kNN top-1 (%) | linear top-1 (%) | train time (s) | cell time (s) |" in md
    assert "| simclr (batch_size=64, loss=nt_xent) | 3 | 82.00 ± 4.97 | 87.00 ± 4.97 |" in md
    assert "| baseline: random_init (convnet) | 2 | 61.00 ± 12.71 |" in md
    assert "`cmp run recipes/synthetic.yaml`" in md
    # the protocol sentence comes from the cells' eval configuration
    assert "`knn`: k=200, temperature=0.1; `linear`." in md
    # loss table: rows are losses, columns the method and its negative source
    assert "| loss | moco (queue) | simclr (in_batch) |" in md
    assert "| margin_triplet | 51.00 ± 2.48 | 51.00 ± 2.48 |" in md
    assert "## Failed cells" in md and "loss became nan at step 3 (epoch 1)" in md
    for png in ("batch_size.png", "curves.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3 and "batch_size.png" not in page  # batch size, curves, accuracy against time
    assert "<td>82.00&nbsp;±&nbsp;4.97</td>" in page
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == len(synthetic) and {r["status"] for r in rows} == {"ok", "failed"}
    simclr_row = next(r for r in rows if r["cell"] == "simclr[b=64,s=0,l=nt_xent]")
    # the report's unit: percent, said by the column's name
    assert float(simclr_row["knn_top1_percent"]) == pytest.approx(80.0)
    assert float(simclr_row["linear_top1_percent"]) == pytest.approx(85.0)
    summary = json.loads(paths["json"].read_text())
    assert len(summary["cells"]) == len(synthetic)
    assert summary["metrics"]["knn_top1"] == {"label": "kNN top-1", "percent": True, "higher_is_better": True}


def test_no_batch_size_figure_without_a_batch_size_sweep(tmp_path: Path) -> None:
    results = [cell("simclr", s, 64, 0.8 + 0.01 * s) for s in range(2)]
    write_report("one", results, [], tmp_path)
    assert not (tmp_path / "batch_size.png").exists()
    assert "Losses and negative sources" not in (tmp_path / "report.md").read_text()


def summary_cell(name: str, metrics: dict[str, float], status: str = "ok", reason: str | None = None,
                 metric_info: dict[str, MetricInfo] | None = None) -> RunResult:
    return RunResult(recipe="r", method=name, cell=name, key=name, status=status, reason=reason, metrics=metrics,
                     metric_info=metric_info or {})


def test_terminal_summary_names_the_best_cell_and_its_margins() -> None:
    results = [
        summary_cell("simclr", {"knn_top1": 0.85}),
        summary_cell("moco", {"knn_top1": 0.83}),
        summary_cell("broken", {"knn_top1": 0.99}, status="failed", reason="NaN loss"),
    ]
    baselines = [BaselineResult(baseline="raw_pixels", label="raw_pixels", key="b", metrics={"knn_top1": 0.8175})]
    table = summary_table(results, baselines)
    assert "top cell on knn_top1: simclr 85.00 (+3.25 vs raw_pixels)" in table
    assert "not a ranking" in table
    assert "broken: NaN loss" in table


def test_terminal_summary_follows_the_declared_unit_and_direction() -> None:
    info = {"probe_error": MetricInfo("probe error", percent=False, higher_is_better=False)}
    results = [summary_cell("simclr", {"probe_error": 0.25}, metric_info=info),
               summary_cell("moco", {"probe_error": 0.5}, metric_info=info)]
    baselines = [BaselineResult(baseline="raw_pixels", label="raw_pixels", key="b", metrics={"probe_error": 0.75})]
    assert "top cell on probe_error: simclr 0.250 (-0.500 vs raw_pixels)" in summary_table(results, baselines)
