"""Compute accounting: images and time to 90 % / 95 % of the gain over the random encoder, against hand computations."""

from __future__ import annotations

from pathlib import Path

from cmp.api.results import RunResult, TrainStats
from cmp.report import write_report
from cmp.report.compute import compute_table
from cmp.report.groups import group_results
from cmp.report.metrics import report_metrics
from tests.cmp.report.synthetic import baseline, cell


def accounted(method: str, seed: int, history: list[float] | None, final: float = 0.82,
              memory: float = 500.0) -> RunResult:
    """10 epochs of 10 steps of 100 images (50 s of training), kNN on a subset at epochs 2, 4, ... 10."""
    base = cell(method, seed, 100, final)
    evaluated = [{"epoch": 2 * (i + 1), "knn_top1": v} for i, v in enumerate(history or [])]
    return base.model_copy(update={
        "train": TrainStats(epochs=10, steps=100, batch_size=100, train_time_s=50.0, images_per_s=200.0 + seed,
                            loss_per_epoch=[1.0] * 10, final_loss=1.0, images_seen=10_000),
        "train_images": 1_000, "eval_history": evaluated, "peak_memory_mb": memory,
    })


def table_rows(results: list[RunResult], baselines: list) -> dict[str, list[str]]:  # type: ignore[type-arg]
    (knn,) = [m for m in report_metrics(results) if m.name == "knn_top1"]
    return {row[0].split(" ")[0]: row for row in compute_table(group_results(results), baselines, knn).rows}


def test_images_and_time_to_a_share_of_the_gain_over_the_random_encoder() -> None:
    # subset values 60, 70, 75, 78, 80; final on every image 82: shifted +2 -> 62, 72, 77, 80, 82.
    # random encoder 60: gain 22 points; 90 % -> 79.8, first reached at epoch 8 (80): 8 000 images, 40 s;
    # 95 % -> 80.9, reached at epoch 10: 10 000 images, 50 s
    results = [accounted("simclr", 0, [0.60, 0.70, 0.75, 0.78, 0.80])]
    rows = table_rows(results, [baseline("random_init (convnet)", 0.60, 0.70), baseline("raw_pixels", 0.7, 0.7)])
    assert rows["simclr"][2:7] == ["+22.00", "8,000 (epoch 8)", "40.0", "10,000 (epoch 10)", "50.0"]
    assert rows["simclr"][7:] == ["200", "500"]


def test_what_stands_in_the_way_is_said_plainly() -> None:
    seeds = [accounted("byol", s, None, memory=400.0 + 100 * s) for s in range(2)]  # no evaluation during training
    rows = table_rows(seeds, [baseline("random_init (convnet)", 0.60, 0.70)])
    assert rows["byol"][3] == "no during-training evaluation"
    assert rows["byol"][7:] == ["200 (200–201)", "450 (400–500)"]  # mean, and the range over cells
    assert table_rows(seeds, [])["byol"][2] == "no random-encoder baseline"
    worse = table_rows([accounted("moco", 0, [0.5, 0.55])], [baseline("random_init (convnet)", 0.90, 0.9)])
    assert worse["moco"][2] == "-8.00 (no gain)"


def test_the_report_has_the_compute_table_and_the_accuracy_against_time_figure(tmp_path: Path) -> None:
    results = [accounted(m, s, [0.60 + 0.01 * s, 0.70, 0.75, 0.78, 0.80]) for m in ("simclr", "moco") for s in range(2)]
    paths = write_report("compute", results, [baseline("random_init (convnet)", 0.60, 0.70),
                                              baseline("raw_pixels", 0.65, 0.7)], tmp_path, {})
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    assert "## Compute" in md and "![kNN top-1 at each evaluation during training" in md
    assert (tmp_path / "accuracy_time.png").stat().st_size > 10_000
    assert "<h2>Compute</h2>" in html and html.count("data:image/png;base64") >= 2
