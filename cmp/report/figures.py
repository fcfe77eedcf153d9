"""The report's figures (PNG, matplotlib's Agg backend): metrics against batch size, training curves.

Panels come from the metrics the results hold, so an evaluator plugin's metric is plotted
like kNN's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cmp.report.document import Figure
from cmp.report.groups import Group
from cmp.report.metrics import ReportMetric

BATCH_SIZE_KEY = "train.batch_size"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, panels: int, width: float = 5.5, height: float = 4.0) -> tuple[Any, list[Any]]:
    """A figure with `panels` axes, at most three a row; unused axes are hidden."""
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def batch_size_figure(groups: list[Group], metrics: list[ReportMetric], path: Path) -> Figure | None:
    """Each metric against batch size, one line per method and other setting (SimCLR's figure 9).

    None unless some line has more than one batch size.
    """
    lines: dict[str, dict[int, Group]] = {}
    for g in groups:
        if not g.ok:
            continue
        batch = (g.ok[0].config.get("train") or {}).get("batch_size")
        if batch is None:
            continue
        rest = {k: v for k, v in g.settings.items() if k != BATCH_SIZE_KEY}
        lines.setdefault(Group(g.method, rest).label, {})[batch] = g
    plotted = [m for m in metrics if any(g.metric(m.name) for points in lines.values() for g in points.values())]
    if not plotted or not any(len(points) > 1 for points in lines.values()):
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(plotted))
    for ax, metric in zip(axes, plotted):
        for label, points in lines.items():
            sizes = sorted(points)
            estimates = [(s, points[s].metric(metric.name)) for s in sizes]
            measured = [(s, e) for s, e in estimates if e is not None]
            ax.errorbar(
                [s for s, _ in measured], [metric.scale * e.mean for _, e in measured],
                yerr=[metric.scale * (e.half_width or 0.0) for _, e in measured], marker="o", capsize=3, label=label,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({s for p in lines.values() for s in p}))
        ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel(metric.label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Metrics against batch size (mean ± 95% interval over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Figure(path, "Each metric against batch size, as in SimCLR's figure 9.")


def curve_panels(groups: list[Group], metrics: list[ReportMetric]) -> list[ReportMetric]:
    """The metrics with a curve: those some finished cell evaluated at more than one epoch."""
    panels = []
    for metric in metrics:
        for r in (r for g in groups for r in g.ok):
            if len({h["epoch"] for h in r.eval_history if metric.name in h}) > 1:
                panels.append(metric)
                break
    return panels


def curves_figure(groups: list[Group], metrics: list[ReportMetric], path: Path) -> Figure | None:
    """Training loss per epoch and one panel per metric of `curve_panels`, means over seeds."""
    plotted = [g for g in groups if g.ok and all(r.train for r in g.ok)]
    if not plotted:
        return None
    panels = curve_panels(plotted, metrics)
    plt = _pyplot()
    fig, axes = _grid(plt, 1 + len(panels))
    loss_ax, metric_axes = axes[0], axes[1:]
    for index, g in enumerate(plotted):
        color = f"C{index % 10}"  # one colour per group on every panel, whichever metrics it has
        losses = [r.train.loss_per_epoch for r in g.ok if r.train]
        length = min(len(x) for x in losses)
        loss_ax.plot(range(1, length + 1), [sum(x[i] for x in losses) / len(losses) for i in range(length)],
                     color=color, label=g.label)
        for ax, metric in zip(metric_axes, panels):
            epochs = sorted(set.intersection(*({h["epoch"] for h in r.eval_history if metric.name in h} for r in g.ok)))
            if not epochs:
                continue
            by_epoch = [[h[metric.name] for r in g.ok for h in r.eval_history if h["epoch"] == e and metric.name in h]
                        for e in epochs]
            ax.plot(epochs, [metric.scale * sum(v) / len(v) for v in by_epoch], marker="o", color=color, label=g.label)
    loss_ax.set_ylabel("training loss (own loss of each run)")
    for ax, metric in zip(metric_axes, panels):
        ax.set_ylabel(metric.label)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    evaluated = f" and {', '.join(m.info.label for m in panels)} at each evaluation" if panels else ""
    return Figure(path, f"Training loss per epoch{evaluated}, mean over seeds.")
