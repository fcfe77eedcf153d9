"""Cells whose encoder came from a weights file stand beside trained ones in the report,
named by the file and its hash in every table, figure and paired comparison."""

from __future__ import annotations

import csv
from pathlib import Path

from cmp.api.results import RunResult
from cmp.report import write_report
from cmp.report.claims import comparisons_table
from cmp.report.figure_data import batch_size_data, curves_data
from cmp.report.groups import group_results
from cmp.report.metrics import report_metrics
from cmp.report.summary import summary_table
from tests.cmp.report.synthetic import METRIC_INFO, baseline, cell

SHA = "1a2b3c4d5e6f" + "0" * 52
SOURCE = "simclr.ckpt sha256:1a2b3c4d5e6f"


def evaluated(seed: int, knn: float) -> RunResult:
    """An evaluate-only cell of an encoder loaded from `weights/simclr.ckpt`."""
    return RunResult(
        recipe="synthetic", method="lightly_simclr", cell="lightly_simclr", key=f"lightly{seed}", status="ok",
        sweep={"train.seed": seed},
        config={"weights": {"encoder": {"path": "weights/simclr.ckpt", "sha256": SHA}},
                "train": {"epochs": 0, "seed": seed, "batch_size": 256},
                "parts": {"encoder": {"name": "convnet", "params": {"weights": "weights/simclr.ckpt"}},
                          "loss": None}},
        metrics={"knn_top1": knn, "linear_top1": knn + 0.05}, metric_info=METRIC_INFO,
        eval_history=[{"epoch": 0, "knn_top1": knn}], encoder_input="grey repeated to 3 channels",
    )


def results() -> list[RunResult]:
    trained = [cell("simclr", seed, 256, 0.8 + 0.01 * seed) for seed in range(3)]
    for r in trained:  # the same settings as the evaluated cells: only the method differs
        r.sweep = {"train.seed": r.sweep["train.seed"]}
    return trained + [evaluated(seed, 0.79 + 0.01 * seed) for seed in range(3)]


def test_groups_name_the_weights_file_and_its_hash() -> None:
    labels = [g.label for g in group_results(results())]
    assert labels == ["simclr", f"lightly_simclr [{SOURCE}]"]


def test_the_paired_comparison_names_the_source() -> None:
    runs = results()
    table = comparisons_table(group_results(runs), report_metrics(runs, []))
    assert table is not None
    (row,) = table.rows
    assert row[1] == f"simclr − lightly_simclr [{SOURCE}]"
    assert row[3].startswith("+1.00 ± 0.00") and row[3].endswith("n=3")


def test_every_table_figure_and_file_of_the_report_names_it(tmp_path: Path) -> None:
    runs = results()
    paths = write_report("mixed", runs, [baseline("random_init (convnet)", 0.3, 0.6, 0)], tmp_path)
    text = paths["markdown"].read_text()
    assert f"| lightly_simclr [{SOURCE}] | 3 |" in text  # the methods table
    assert f"| lightly_simclr [{SOURCE}] | 0 |" in text  # what was run
    assert "input: grey repeated to 3 channels" in text
    assert f"| method | lightly_simclr [{SOURCE}] − simclr |" in text  # the paired comparisons (sorted by method)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert {row["weights"] for row in rows} == {"", SOURCE}
    assert f"lightly_simclr [{SOURCE}]" in summary_table(runs, [])


def test_a_trained_cell_started_from_weights_is_named_on_its_curves() -> None:
    started = [cell("simclr", seed, 256, 0.8) for seed in range(2)]
    for r in started:
        r.config["weights"] = {"encoder": {"path": "init.pt", "sha256": SHA}}
    data = curves_data(group_results(started), report_metrics(started, []), [])
    assert data is not None
    labels = {s.label for row in data.rows for panel in (row.loss, *row.metrics) if panel for s in panel.series}
    assert labels == {"simclr [init.pt sha256:1a2b3c4d5e6f] (batch_size=256, loss=nt_xent)"}


def test_evaluate_only_cells_are_no_point_of_the_batch_size_figure() -> None:
    trained = [cell("simclr", seed, batch, 0.8) for batch in (128, 256) for seed in range(2)]
    runs = trained + [evaluated(seed, 0.79) for seed in range(2)]
    data = batch_size_data(group_results(runs), report_metrics(runs, []), [])
    assert data is not None
    labels = {s.label for row in data.rows for panel in row if panel for s in panel.series}
    assert labels == {"simclr (loss=nt_xent)"}
