"""A metric of an evaluator plugin cmp has never heard of reaches every part of the report.

The results carry `probe_auc`, described by its evaluator as `MetricInfo("probe AUC")` and
evaluated at two epochs; nothing in cmp names it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure as MatplotlibFigure

from cmp.api.results import MetricInfo, RunResult
from cmp.report import curve_panels, group_results, report_metrics, write_report
from tests.cmp.report.synthetic import cell


def with_probe(result: RunResult, auc: float) -> RunResult:
    """`result` as if a `probe` evaluator had also run: `probe_auc` at epochs 1 and 2."""
    return result.model_copy(update={
        "metrics": {**result.metrics, "probe_auc": auc},
        "metric_info": {**result.metric_info, "probe_auc": MetricInfo("probe AUC")},
        "eval_history": [{**h, "probe_auc": auc - 0.1 * (2 - h["epoch"])} for h in result.eval_history],
        "config": {**result.config, "eval": {**result.config["eval"], "probe": {"name": "probe", "params": {"c": 1.0}}}},
    })


@pytest.fixture
def probed() -> list[RunResult]:
    return [with_probe(cell("simclr", seed, 64, 0.8 + 0.02 * seed), 0.9 + 0.02 * seed) for seed in range(3)]


@pytest.fixture
def plotted_panels(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The y labels of the visible panels of every figure saved, by file name."""
    panels: dict[str, list[str]] = {}
    save = MatplotlibFigure.savefig

    def recording_save(self: MatplotlibFigure, path: Any, *args: Any, **kwargs: Any) -> None:
        panels[Path(path).name] = [ax.get_ylabel() for ax in self.axes if ax.get_visible()]
        save(self, path, *args, **kwargs)

    monkeypatch.setattr(MatplotlibFigure, "savefig", recording_save)
    return panels


def test_the_declared_metric_is_a_column_of_every_table_and_file(tmp_path: Path, probed: list[RunResult]) -> None:
    paths = write_report("probed", probed, [], tmp_path)
    md = paths["markdown"].read_text()
    assert "| run | seeds | kNN top-1 (%) | linear top-1 (%) | probe AUC (%) | train time (s) |" in md
    assert "| simclr (batch_size=64, loss=nt_xent) | 3 | 82.00 ± 4.97 | 87.00 ± 4.97 | 92.00 ± 4.97 |" in md
    assert "`probe`: c=1.0" in md
    page = paths["html"].read_text()
    assert "<th>probe AUC (%)</th>" in page and "<td>92.00&nbsp;±&nbsp;4.97</td>" in page
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [float(r["probe_auc_percent"]) for r in rows] == pytest.approx([90.0, 92.0, 94.0])  # the report's unit


def test_the_declared_metric_gets_a_curve(tmp_path: Path, probed: list[RunResult], plotted_panels: dict[str, list[str]]) -> None:
    groups = group_results(probed)
    metrics = report_metrics(probed)
    # linear top-1 is evaluated once, after training: no curve
    assert [m.name for m in curve_panels(groups, metrics)] == ["knn_top1", "probe_auc"]
    md = write_report("probed", probed, [], tmp_path)["markdown"].read_text()
    assert plotted_panels["curves.png"] == ["training loss (own loss of each run)", "kNN top-1 (%)", "probe AUC (%)"]
    assert "Training loss per epoch and kNN top-1, probe AUC at each evaluation" in md


def test_a_metric_nobody_described_is_labelled_by_its_name(tmp_path: Path) -> None:
    results = [cell("simclr", 0, 64, 0.8).model_copy(update={"metrics": {"knn_top1": 0.8, "mystery": 0.5}})]
    metrics = report_metrics(results)
    assert [(m.name, m.label) for m in metrics] == [
        ("knn_top1", "kNN top-1 (%)"), ("linear_top1", "linear top-1 (%)"), ("mystery", "mystery (%)"),
    ]
    md = write_report("mystery", results, [], tmp_path)["markdown"].read_text()
    assert "| mystery (%) |" in md and "| 50.00 |" in md
