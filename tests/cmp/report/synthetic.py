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


LOSS_START = {"nt_xent": 7.8, "nt_logistic": 0.7, "margin_triplet": 0.2}
"""Typical first-epoch values of each loss: their scales differ by more than an order of magnitude."""


def budget_cell(method: str, seed: int, batch: int, knn: float, loss: str = "nt_xent", epochs: int = 10,
                steps: int | None = None, eval_epochs: tuple[int, ...] | None = None) -> RunResult:
    """A cell of a budget sweep: `epochs` epochs of loss curve (or as many as `steps` steps make at
    `batch`, 50,000 images an epoch), kNN top-1 evaluated at `eval_epochs` (default every epoch)
    rising to `knn` at the last, linear top-1 `knn + 0.05` after training only.

    `steps` set: the config's `train.steps` is set, so the cell is one of fixed steps.
    """
    if steps is not None:
        epochs = max(1, round(steps * batch / 50_000))
    start = LOSS_START.get(loss, 1.0)
    floor = 0.6 - 0.03 * batch.bit_length() / 13 - (0.05 if method == "moco" else 0.0)
    losses = [start * (floor + (1 - floor) / (1 + e)) * (1 - 0.01 * seed) for e in range(epochs)]
    evaluated = eval_epochs if eval_epochs is not None else tuple(range(1, epochs + 1))
    train = {"batch_size": batch, "seed": seed, "epochs": epochs, **({"steps": steps} if steps is not None else {})}
    sweep = {"train.batch_size": batch, "loss.name": loss, "train.seed": seed,
             **({"train.steps": steps} if steps is not None else {})}
    budget = f"steps={steps}" if steps is not None else f"epochs={epochs}"
    return RunResult(
        recipe="synthetic", method=method, cell=f"{method}[b={batch},s={seed},l={loss},{budget}]",
        key=f"{method}{seed}{batch}{loss}{budget}", status="ok", sweep=sweep,
        config={"train": train, "parts": {"loss": {"name": loss, "params": {}}}, "eval": EVALUATORS},
        metrics={"knn_top1": knn, "linear_top1": knn + 0.05}, metric_info=METRIC_INFO,
        train=TrainStats(epochs=epochs, steps=steps or epochs * 50_000 // batch, batch_size=batch, train_time_s=10.0,
                         images_per_s=1000.0, loss_per_epoch=losses, final_loss=losses[-1]),
        eval_history=[{"epoch": e, "knn_top1": knn - 0.2 * (1 - e / max(evaluated))} for e in evaluated],
        wall_time_s=12.0,
    )


def budget_sweep(methods: tuple[str, ...] = ("simclr", "moco"), losses: tuple[str, ...] = ("nt_xent", "margin_triplet"),
                 batches: tuple[int, ...] = (256, 1024, 4096), seeds: int = 3, epochs: int = 10,
                 steps: int | None = 400) -> list[RunResult]:
    """Methods x losses x batch sizes x seeds, each at `epochs` epochs and, unless `steps` is None,
    again at `steps` steps; kNN top-1 rises with the batch size at fixed epochs, falls at fixed steps."""
    results = []
    for m, method in enumerate(methods):
        for k, loss in enumerate(losses):
            for b, batch in enumerate(batches):
                for seed in range(seeds):
                    knn = 0.8 - 0.05 * m - 0.04 * k + 0.01 * seed
                    results.append(budget_cell(method, seed, batch, knn + 0.02 * b, loss, epochs=epochs))
                    if steps is not None:
                        results.append(budget_cell(method, seed, batch, knn - 0.03 * b, loss, steps=steps))
    return results
