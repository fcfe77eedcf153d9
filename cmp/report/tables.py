"""The report's tables: methods against baselines, losses against negative sources, failures.

Metric columns are those of `cmp.report.metrics.report_metrics`, never a fixed list.
"""

from __future__ import annotations

import json
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.document import Table
from cmp.report.groups import Group, baseline_groups
from cmp.report.metrics import ReportMetric
from cmp.report.stats import estimate


def method_table(groups: list[Group], baselines: list[BaselineResult], metrics: list[ReportMetric]) -> Table:
    """One row per finished group, then one per baseline: each metric over seeds, and costs."""
    header = ["run", "seeds", *(m.label for m in metrics), "train time (s)", "images/s", "peak memory (MB)"]
    rows = []
    for g in groups:
        if not g.ok:
            continue
        rows.append([
            g.label, str(len(g.ok)), *(m.format(g.metric(m.name)) for m in metrics),
            _number(g.mean_of(lambda r: r.train.train_time_s if r.train else None), 1),
            _number(g.mean_of(lambda r: r.train.images_per_s if r.train else None), 0),
            _number(g.mean_of(lambda r: r.peak_memory_mb), 0),
        ])
    for label, items in baseline_groups(baselines).items():
        cells = []
        for m in metrics:
            values = [b.metrics[m.name] for b in items if m.name in b.metrics]
            cells.append(m.format(estimate(values) if values else None))
        rows.append([f"baseline: {label}", str(len(items)), *cells, "-", "-", "-"])
    return Table(header, rows, "Mean ± 95% interval (Student t) over seeds; one value where a single seed ran. "
                 "A baseline's seeds are those of the cells that asked for it.")


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def loss_table(results: list[RunResult], metric: ReportMetric) -> Table | None:
    """Losses x (method, negative source) for one metric (SimCLR's table 2), when more than one loss ran."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results:
        parts = r.config.get("parts") or {}
        if not r.ok or metric.name not in r.metrics or not parts.get("loss"):
            continue
        negatives = (parts.get("negative_source") or {}).get("name", "none")
        cells.setdefault((loss_label(parts["loss"]), f"{r.method} ({negatives})"), []).append(r.metrics[metric.name])
    losses = sorted({loss for loss, _ in cells})
    if len(losses) < 2:
        return None
    columns = sorted({column for _, column in cells})
    rows = [
        [loss, *(metric.format(estimate(cells[(loss, c)])) if (loss, c) in cells else "-" for c in columns)]
        for loss in losses
    ]
    return Table(["loss", *columns], rows, f"{metric.label}, mean ± 95% interval over seeds.")


def loss_label(loss: dict[str, Any]) -> str:
    """`nt_xent (t=0.5)`, `margin_triplet (semi-hard, m=0.5)`: a loss and the parameters that tell variants apart."""
    params = loss.get("params") or {}
    extras = []
    if params.get("semi_hard"):
        extras.append("semi-hard")
    if "temperature" in params:
        extras.append(f"t={params['temperature']}")
    if "margin" in params:
        extras.append(f"m={params['margin']}")
    return f"{loss['name']} ({', '.join(extras)})" if extras else str(loss["name"])


def evaluation_protocol(results: list[RunResult]) -> str | None:
    """A sentence naming each evaluator of the cells' resolved `eval` configuration and its parameters.

    Built from the configuration, not from known evaluator names, so a plugin's evaluator
    is described like cmp's own; a variant used by several cells is named once.
    """
    described: list[str] = []
    for r in results:
        for key, choice in (r.config.get("eval") or {}).items():
            choice = choice or {}
            name = str(choice.get("name", key))
            params = ", ".join(f"{k}={_param(v)}" for k, v in (choice.get("params") or {}).items())
            text = f"`{key}`" + (f" ({name})" if name != key else "") + (f": {params}" if params else "")
            if text not in described:
                described.append(text)
    if not described:
        return None
    return ("Evaluators, fitted on the frozen encoder's features of the training split and scored on the "
            f"test split: {'; '.join(described)}.")


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def failures_table(failed: list[RunResult]) -> Table:
    """Each failed cell and why it failed."""
    return Table(["cell", "reason"], [[r.cell, r.reason or "-"] for r in failed])
