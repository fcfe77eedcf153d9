"""Synthetic results for the report tests: typed records as a recipe's cells would write them."""

from __future__ import annotations

from cmp.api.results import BaselineResult, MetricInfo, RunResult, TrainStats

EVALUATORS = {"knn": {"name": "knn", "params": {"k": 200, "temperature": 0.1}}, "linear": {"name": "linear", "params": {}}}
METRIC_INFO = {"knn_top1": MetricInfo("kNN top-1"), "linear_top1": MetricInfo("linear top-1")}


def cell(method: str, seed: int, batch: int, knn: float, loss: str = "nt_xent", negatives: str = "in_batch",
         status: str = "ok", reason: str | None = None) -> RunResult:
    """One cell: kNN top-1 `knn` (evaluated at epochs 1 and 2), linear top-1 `knn + 0.05`."""
    ok = status == "ok"
    return RunResult(
        recipe="synthetic", method=method, cell=f"{method}[b={batch},s={seed},l={loss}]",
        key=f"{method}{seed}{batch}{loss}", status=status, reason=reason,
        sweep={"train.batch_size": batch, "loss.name": loss, "train.seed": seed},
        config={"train": {"batch_size": batch, "seed": seed, "epochs": 2},
                "parts": {"loss": {"name": loss, "params": {}}, "negative_source": {"name": negatives, "params": {}}},
                "eval": EVALUATORS},
        metrics={"knn_top1": knn, "linear_top1": knn + 0.05} if ok else {},
        metric_info=METRIC_INFO if ok else {},
        train=TrainStats(epochs=2, steps=20, batch_size=batch, train_time_s=10.0 + seed, images_per_s=1000.0,
                         loss_per_epoch=[5.0, 4.0 - 0.1 * seed], final_loss=4.0) if ok else None,
        eval_history=[{"epoch": 1, "knn_top1": knn - 0.1}, {"epoch": 2, "knn_top1": knn}] if ok else [],
        peak_memory_mb=100.0, wall_time_s=12.0,
    )


def synthetic_results() -> list[RunResult]:
    """Two methods x two batch sizes x three seeds, a second loss at one batch size, one failed cell."""
    results = []
    for method, negatives, base in (("simclr", "in_batch", 0.80), ("moco", "queue", 0.70)):
        for batch, bonus in ((64, 0.0), (128, 0.01)):
            for seed, delta in enumerate((0.0, 0.02, 0.04)):
                results.append(cell(method, seed, batch, base + bonus + delta, negatives=negatives))
        for seed in range(3):
            results.append(cell(method, seed, 64, 0.5 + 0.01 * seed, loss="margin_triplet", negatives=negatives))
    results.append(cell("moco", 9, 256, 0.0, status="failed", reason="loss became nan at step 3 (epoch 1)"))
    return results


def baseline(label: str, knn: float, linear: float, seed: int | None = None) -> BaselineResult:
    return BaselineResult(baseline=label.split(" ")[0], label=label, key=f"{label}{seed}", seed=seed,
                          metrics={"knn_top1": knn, "linear_top1": linear})
