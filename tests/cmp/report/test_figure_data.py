"""What the report's figures show, checked without drawing: panels, series values against numbers
computed here from the raw results (numpy, the t quantile written out), baselines, labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmp.api.results import MetricInfo, RunResult
from cmp.report.figure_data import Panel, batch_size_data, curves_data, metric_curves_data
from cmp.report.groups import group_results, result_order
from cmp.report.metrics import report_metrics
from tests.cmp.report.synthetic import baseline, budget_sweep

T_975_2 = 4.302652729911275
"""Student's t, 97.5% quantile, 2 degrees of freedom (three seeds): from a table, not scipy."""


def prepared(results: list[RunResult]) -> tuple[list, list]:
    results = sorted(results, key=result_order)
    return group_results(results), report_metrics(results)


def test_batch_size_panels_hold_the_mean_and_interval_over_seeds_of_each_line_per_budget() -> None:
    results = budget_sweep(losses=("nt_xent",))
    groups, metrics = prepared(results)
    data = batch_size_data(groups, metrics)
    assert data is not None and [len(row) for row in data.rows] == [2, 2]  # kNN, linear x epochs, steps
    panels = [panel for row in data.rows for panel in row]
    assert all(isinstance(p, Panel) for p in panels)
    assert [p.title for p in panels] == ["kNN top-1 at 10 epochs", "kNN top-1 at 400 steps",
                                         "linear top-1 at 10 epochs", "linear top-1 at 400 steps"]
    knn_steps = data.rows[0][1]
    assert knn_steps is not None
    moco = next(s for s in knn_steps.series if s.label.startswith("moco"))
    assert moco.x == (256, 1024, 4096) and moco.index == 0  # moco sorts first: its style on every panel
    for batch, y, error in zip(moco.x, moco.y, moco.errors or ()):
        values = 100 * np.array([r.metrics["knn_top1"] for r in results
                                 if r.method == "moco" and r.config["train"].get("steps") == 400
                                 and r.config["train"]["batch_size"] == batch])
        assert len(values) == 3
        assert y == pytest.approx(values.mean())
        assert error == pytest.approx(T_975_2 * values.std(ddof=1) / math.sqrt(3))
    assert knn_steps.batch_sizes == (256, 1024, 4096) and knn_steps.xlim == pytest.approx((256 / 1.4, 4096 * 1.4))
    assert "one column per training budget" in data.caption and "baselines" not in data.caption
    assert data.title.endswith("columns: fixed epochs (10 epochs), fixed steps (400 steps)")


def test_a_baseline_is_one_reference_per_label_at_its_mean_over_seeds() -> None:
    results = budget_sweep(methods=("simclr",), losses=("nt_xent",), steps=None)
    groups, metrics = prepared(results)
    baselines = [baseline("raw_pixels", 0.796, 0.81), baseline("random_init", 0.40, 0.45, seed=0),
                 baseline("random_init", 0.43, 0.46, seed=1)]
    data = batch_size_data(groups, metrics, baselines)
    assert data is not None and data.caption.endswith("dashed grey lines: baselines (mean over their seeds).")
    [[knn], [linear]] = data.rows
    assert knn is not None and linear is not None
    assert [(r.label, r.index) for r in knn.references] == [("raw_pixels 79.6", 0), ("random_init 41.5", 1)]
    assert [r.value for r in linear.references] == pytest.approx([81.0, 45.5])


def test_each_loss_is_a_row_whose_loss_panel_holds_the_mean_loss_per_epoch() -> None:
    results = budget_sweep(losses=("nt_xent", "margin_triplet"), steps=None, seeds=2)
    groups, metrics = prepared(results)
    data = curves_data(groups, metrics)
    assert data is not None and data.title == "Training curves (mean over seeds); one row per loss"
    assert [row.loss.title for row in data.rows if row.loss] == ["training loss: margin_triplet", "training loss: nt_xent"]
    margin = data.rows[0]
    assert margin.loss is not None and len(margin.loss.series) == 6  # 2 methods x 3 batch sizes
    series = margin.loss.series[0]
    assert series.label == "moco (batch_size=256)"  # the row's loss goes without saying
    losses = np.array([r.train.loss_per_epoch for r in results if r.train and r.method == "moco"
                       and r.config["train"]["batch_size"] == 256 and r.sweep["loss.name"] == "margin_triplet"])
    assert series.x == tuple(range(1, 11)) and series.y == pytest.approx(losses.mean(axis=0))
    assert margin.loss.xlim == (0.5, 10.5) and series.errors is None
    # the metric panels: kNN per epoch; linear top-1 was evaluated after training only, so it has none
    assert [m.name for m in metrics] == ["knn_top1", "linear_top1"] and len(margin.metrics) == 1
    [knn] = margin.metrics
    assert knn is not None and knn.title == "kNN top-1: margin_triplet" and knn.references == ()
    # the style index is the group's across the figure: the same in both rows' panels
    assert {s.label: s.index for s in knn.series} == {s.label: s.index for s in margin.loss.series}


def test_diagnostics_say_which_way_is_better_and_show_every_group() -> None:
    info = MetricInfo("uniformity", percent=False, higher_is_better=False)
    results = [r.model_copy(update={"metric_info": {**r.metric_info, "uniformity": info},
                                    "eval_history": [{**h, "uniformity": -1.0 - h["epoch"] / 10} for h in r.eval_history]})
               for r in budget_sweep(losses=("nt_xent",), steps=None, seeds=1)]
    groups, metrics = prepared(results)
    data = metric_curves_data(groups, [m for m in metrics if not m.info.percent])
    assert data is not None
    [panel] = data.panels
    assert panel.title == "uniformity (lower is better)" and len(panel.series) == len(groups) == 6
    assert panel.series[0].y == pytest.approx([-1.0 - e / 10 for e in range(1, 11)])
    assert metric_curves_data(groups, [m for m in metrics if m.info.percent and m.name == "linear_top1"]) is None
