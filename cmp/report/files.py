"""The report's data files: results.csv (one row per cell) and results.json (groups and records).

results.csv has fixed identity and cost columns and one column per metric found in the
results, in the report's unit: a percentage metric in percent, its column named
`<metric>_percent` (result.json and TensorBoard keep the fraction); results.json says how
each metric is shown.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.groups import Group, weights_source
from cmp.report.metrics import ReportMetric
from cmp.report.tables import loss_label

IDENTITY_COLUMNS = [
    "recipe", "method", "cell", "key", "status", "reason", "seed", "batch_size", "epochs", "loss", "negative_source",
    "weights",
]
COST_COLUMNS = ["final_loss", "train_time_s", "wall_time_s", "images_per_s", "peak_memory_mb", "sweep"]


def metric_columns(metrics: list[ReportMetric]) -> dict[str, str]:
    """CSV column of each metric: its name (`_percent` appended for a percentage), or
    `metric.<name>` where that is a fixed column's."""
    fixed = set(IDENTITY_COLUMNS) | set(COST_COLUMNS)
    columns = {m.name: f"{m.name}_percent" if m.info.percent else m.name for m in metrics}
    return {name: f"metric.{column}" if column in fixed else column for name, column in columns.items()}


def csv_row(result: RunResult, columns: dict[str, str], scale: dict[str, float] | None = None) -> dict[str, Any]:
    """One cell's CSV row; `columns` maps each metric to its column, `scale` to its unit (default 1)."""
    scale = scale or {}
    train_config = result.config.get("train") or {}
    parts = result.config.get("parts") or {}
    stats = result.train
    return {
        "recipe": result.recipe, "method": result.method, "cell": result.cell, "key": result.key,
        "status": result.status, "reason": result.reason or "",
        "seed": train_config.get("seed"), "batch_size": train_config.get("batch_size"), "epochs": train_config.get("epochs"),
        "loss": loss_label(parts["loss"]) if parts.get("loss") else "",
        "negative_source": (parts.get("negative_source") or {}).get("name", ""),
        "weights": weights_source(result) or "",
        **{column: None if result.metrics.get(name) is None else result.metrics[name] * scale.get(name, 1.0)
           for name, column in columns.items()},
        "final_loss": stats.final_loss if stats else None, "train_time_s": stats.train_time_s if stats else None,
        "wall_time_s": result.wall_time_s, "images_per_s": stats.images_per_s if stats else None,
        "peak_memory_mb": result.peak_memory_mb, "sweep": json.dumps(result.sweep, sort_keys=True),
    }


def write_csv(results: list[RunResult], metrics: list[ReportMetric], path: Path) -> None:
    """results.csv: a row per cell, failed cells included."""
    columns = metric_columns(metrics)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*IDENTITY_COLUMNS, *columns.values(), *COST_COLUMNS])
        writer.writeheader()
        scale = {m.name: m.scale for m in metrics}
        writer.writerows(csv_row(r, columns, scale) for r in results)


def write_json(
    name: str, results: list[RunResult], baselines: list[BaselineResult], groups: list[Group],
    metrics: list[ReportMetric], invocation: dict[str, Any] | None, path: Path,
) -> None:
    """results.json: how metrics are shown, each group's estimates, and every cell's and baseline's record."""
    summary = []
    for g in groups:
        estimates = {m.name: g.metric(m.name) for m in metrics}
        summary.append({
            "group": g.label, "method": g.method, "settings": g.settings, "seeds": len(g.ok), "failed": len(g.failed),
            **{n: {"mean": e.mean, "ci95": e.half_width, "n": e.n} for n, e in estimates.items() if e is not None},
        })
    path.write_text(json.dumps(
        {
            "recipe": name, "invocation": invocation,
            "metrics": {m.name: asdict(m.info) for m in metrics},
            "groups": summary,
            "cells": [r.model_dump(mode="json") for r in results],
            "baselines": [b.model_dump(mode="json") for b in baselines],
        },
        indent=2, default=str,
    ))
