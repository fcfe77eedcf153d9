"""The report's figures (PNG, matplotlib's Agg backend): metrics against batch size, training curves.

Panels come from the metrics the results hold, so an evaluator plugin's metric is plotted
like kNN's. Every series has its own colour, line style and marker (`series_style`), the
same on every panel of a figure; baselines are grey dashed reference lines, their name and
value written at the line's end just right of the panel. A legend is on every panel, or,
when there are more than `CROWDED_LEGEND` series, one legend outside the plotting area (a
legend per row of a figure whose rows hold different runs). A series of one point (a run
of one epoch, a metric evaluated once) is drawn as its marker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.document import Figure
from cmp.report.groups import Group, baseline_groups
from cmp.report.metrics import ReportMetric

BATCH_SIZE_KEY = "train.batch_size"
TITLE_INCHES = 0.7
"""Height kept free above the panels for a figure's (up to two-line) title."""
BUDGET_KEYS = ("train.steps", "train.epochs")
"""Swept keys that set a cell's training budget: its panel column, not its line."""

CROWDED_LEGEND = 4
"""More series than this: one legend outside the panels instead of one on each (baselines are
labelled at their lines, not in legends)."""
LOSS_KEY = "loss.name"

# matplotlib's tab10 (Tableau 10), the colour-blind-friendly default cycle
SERIES_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
SERIES_LINESTYLES = ("-", "--", "-.", ":")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
BASELINE_LINESTYLES = ((0, (6, 3)), (0, (2, 2)), (0, (8, 3, 2, 3)), (0, (12, 4)), (0, (4, 2, 1, 2, 1, 2)))
BASELINE_GREYS = ("0.3", "0.55", "0.4", "0.65", "0.2")
BASELINES_CAPTION = "dashed grey lines: baselines (mean over their seeds)"

FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
        "legend.fontsize": 9, "figure.titlesize": 12}


def series_style(index: int) -> dict[str, Any]:
    """Colour, line style and marker of the `index`-th series of a figure (matplotlib keywords).

    The colour is tab10's `index % 10`; the line style moves on with both the colour and
    each round of ten, so the first 40 series have distinct (colour, line style) pairs and
    neighbours differ in both. The marker changes too.
    """
    colour, round_ = index % len(SERIES_COLOURS), index // len(SERIES_COLOURS)
    return {
        "color": SERIES_COLOURS[colour],
        "linestyle": SERIES_LINESTYLES[(colour + 3 * round_) % len(SERIES_LINESTYLES)],
        "marker": SERIES_MARKERS[(colour + 3 * round_) % len(SERIES_MARKERS)],
    }


def baseline_style(index: int) -> dict[str, Any]:
    """The `index`-th baseline's reference line: a grey of its own and a dash pattern of its own."""
    return {"color": BASELINE_GREYS[index % len(BASELINE_GREYS)],
            "linestyle": BASELINE_LINESTYLES[index % len(BASELINE_LINESTYLES)], "linewidth": 1.4}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, panels: int, width: float = 5.2, height: float = 3.9) -> tuple[Any, list[Any]]:
    """A figure with `panels` axes, at most three a row; unused axes are hidden."""
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def _draw_baselines(ax: Any, baselines: dict[str, list[BaselineResult]], metric: ReportMetric) -> list[Any]:
    """A horizontal line per baseline label with `metric`, at its mean over seeds; the lines drawn.

    Each line's label is `raw_pixels 79.6`, its label and value; `_label_baselines` writes it
    at the line's end once the axis limits are final.
    """
    drawn = []
    for index, (label, runs) in enumerate(baselines.items()):
        values = [b.metrics[metric.name] for b in runs if metric.name in b.metrics]
        if not values:
            continue
        mean = metric.scale * sum(values) / len(values)
        text = f"{label} {mean:.1f}" if metric.info.percent else f"{label} {mean:.3f}"
        drawn.append(ax.axhline(mean, label=text, gid="baseline", zorder=1, **baseline_style(index)))
    return drawn


def _label_baselines(ax: Any, lines: Sequence[Any]) -> list[Any]:
    """Each baseline line's label as text just outside the panel's right edge, at the line's
    height, so that it never covers data; the texts made. Call before `tight_layout` (which
    then leaves them room) and `_space_labels` after it."""
    texts = [ax.annotate(line.get_label(), xy=(1.0, line.get_ydata()[0]), xycoords=ax.get_yaxis_transform(),
                         xytext=(4.0, 0.0), textcoords="offset points", ha="left", va="center", fontsize=8.5,
                         color="0.2", annotation_clip=False)
             for line in lines]
    _space_labels(ax, texts)
    return texts


def _space_labels(ax: Any, texts: Sequence[Any], gap: float = 10.0) -> None:
    """Move labels of lines closer than `gap` points up, so that none covers another."""
    ax.get_ylim()  # autoscaled limits fix where the lines are
    points_per_pixel = 72.0 / ax.figure.dpi
    heights = sorted(((ax.transData.transform((0.0, t.xy[1]))[1] * points_per_pixel, t) for t in texts),
                     key=lambda item: item[0])
    top = -math.inf
    for y, text in heights:
        offset = max(0.0, top + gap - y)
        text.xyann = (4.0, offset)
        top = y + offset


def _legend_columns(entries: int, height_in: float) -> int:
    """Legend columns so that `entries` rows of 9-point text fit in `height_in` inches."""
    return max(1, math.ceil(entries / max(1, int(height_in / 0.21))))


def _outside_legend(fig: Any, handles: Sequence[Any], y: float = 0.5, height_in: float | None = None) -> Any:
    """A figure legend to the right of the panels, centred at figure height `y` (saved with bbox_inches="tight")."""
    height = height_in if height_in is not None else fig.get_figheight()
    return fig.legend(handles=list(handles), labels=[h.get_label() for h in handles], loc="center left",
                      bbox_to_anchor=(1.0, y), ncols=_legend_columns(len(handles), height), frameon=False)


def _panel_legend(ax: Any, handles: Sequence[Any]) -> None:
    if handles:
        ax.legend(handles=list(handles), labels=[h.get_label() for h in handles], loc="best", framealpha=0.85)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _budget(result: RunResult) -> tuple[str, int | None]:
    """`("steps", S)` for a cell trained for a fixed number of steps, else `("epochs", E)`."""
    train = result.config.get("train") or {}
    if train.get("steps"):
        return ("steps", int(train["steps"]))
    epochs = train.get("epochs", result.train.epochs if result.train else None)
    return ("epochs", None if epochs is None else int(epochs))


def _budget_order(budget: tuple[str, int | None]) -> tuple[int, int]:
    return (0 if budget[0] == "epochs" else 1, budget[1] or 0)


def _budget_at(budget: tuple[str, int | None]) -> str:
    """`at 10 epochs`, `at 400 steps`, or `` when the count is unknown."""
    kind, count = budget
    if count is None:
        return ""
    return f"at {count} {kind[:-1] if count == 1 else kind}"


def budget_name(budget: tuple[str, int | None]) -> str:
    """`fixed epochs (10 epochs)` / `fixed steps (400 steps)`."""
    at = _budget_at(budget)
    return f"fixed {budget[0]} ({at[3:]})" if at else f"fixed {budget[0]}"


def batch_size_figure(groups: list[Group], metrics: list[ReportMetric], path: Path,
                      baselines: Iterable[BaselineResult] = ()) -> Figure | None:
    """Each metric against batch size, one line per method and other setting (SimCLR's figure 9).

    A cell's training budget is a fixed number of steps when its `train.steps` is set, else
    a fixed number of epochs; at a fixed number of epochs a larger batch makes fewer steps,
    so cells of different budgets are never on one line. With one budget there is a panel
    per metric; with several, a row per metric and a column per budget, the rows' y axes
    shared. Baselines are grey reference lines. None unless some line has more than one
    batch size.
    """
    lines: dict[str, dict[tuple[str, int | None], dict[int, Group]]] = {}
    for g in groups:
        if not g.ok:
            continue
        batch = (g.ok[0].config.get("train") or {}).get("batch_size")
        if batch is None:
            continue
        rest = {k: v for k, v in g.settings.items() if k != BATCH_SIZE_KEY and k not in BUDGET_KEYS}
        lines.setdefault(Group(g.method, rest).label, {}).setdefault(_budget(g.ok[0]), {})[batch] = g
    cells = [g for budgets in lines.values() for points in budgets.values() for g in points.values()]
    plotted = [m for m in metrics if any(g.metric(m.name) for g in cells)]
    if not plotted or not any(len(points) > 1 for budgets in lines.values() for points in budgets.values()):
        return None
    budgets = sorted({b for by_budget in lines.values() for b in by_budget}, key=_budget_order)
    by_label = baseline_groups(baselines)
    plt = _pyplot()
    with plt.rc_context(FONT):
        if len(budgets) == 1:
            fig, flat = _grid(plt, len(plotted))
            panels = [(ax, metric, budgets[0]) for ax, metric in zip(flat, plotted)]
        else:
            fig, grid = plt.subplots(len(plotted), len(budgets), figsize=(5.2 * len(budgets), 3.9 * len(plotted)),
                                     squeeze=False)
            for row in grid:
                for ax in row[1:]:
                    ax.sharey(row[0])
            panels = [(ax, metric, budget) for row, metric in zip(grid, plotted) for ax, budget in zip(row, budgets)]
        series: dict[str, Any] = {}
        shown = []
        for ax, metric, budget in panels:
            drawn = []
            for index, (label, by_budget) in enumerate(lines.items()):
                points = by_budget.get(budget, {})
                measured = [(s, e) for s, e in ((s, points[s].metric(metric.name)) for s in sorted(points)) if e is not None]
                if not measured:
                    continue
                drawn.append(ax.errorbar(
                    [s for s, _ in measured], [metric.scale * e.mean for _, e in measured],
                    yerr=[metric.scale * (e.half_width or 0.0) for _, e in measured], capsize=3, linewidth=1.6,
                    markersize=6, label=label, **series_style(index),
                ))
                series.setdefault(label, drawn[-1])
            if not drawn:  # no cell of this budget has this metric: no empty panel
                ax.set_visible(False)
                continue
            shown.append((ax, drawn, _draw_baselines(ax, by_label, metric)))
            sizes = sorted({s for by_budget in lines.values() for s in by_budget.get(budget, {})})
            ax.set_xscale("log", base=2)
            ax.set_xlim(sizes[0] / 1.4, sizes[-1] * 1.4)
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.xaxis.set_minor_locator(plt.matplotlib.ticker.NullLocator())
            ax.set_xlabel("batch size (log scale)")
            ax.set_ylabel(metric.label)
            at = _budget_at(budget)
            ax.set_title(f"{metric.info.label} {at}".strip())
            ax.grid(alpha=0.3)
        title = "Metrics against batch size (mean ± 95% interval over seeds)"
        if len(budgets) > 1:
            title += "\ncolumns: " + ", ".join(budget_name(b) for b in budgets)
        fig.suptitle(title)
        labels = [(ax, _label_baselines(ax, refs)) for ax, _, refs in shown]
        fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_INCHES / fig.get_figheight()))  # room for the suptitle
        for ax, texts in labels:
            _space_labels(ax, texts)
        if len(series) > CROWDED_LEGEND:
            _outside_legend(fig, list(series.values()))
        else:
            for ax, handles, _ in shown:
                _panel_legend(ax, handles)
        _save(fig, path)
        plt.close(fig)
    caption = ("Each metric against batch size (log scale), mean ± 95% interval over seeds, as in SimCLR's "
               "figure 9; one line per method and setting other than the batch size")
    if len(budgets) > 1:
        caption += ("; one column per training budget (" + ", ".join(budget_name(b) for b in budgets) + "): at a "
                    "fixed number of epochs a larger batch makes fewer optimiser steps, at a fixed number of steps "
                    "it sees more images; the y axes of a row are shared")
    if any(refs for _, _, refs in shown):
        caption += f"; {BASELINES_CAPTION}"
    return Figure(path, caption + ".")


def curve_panels(groups: list[Group], metrics: list[ReportMetric]) -> list[ReportMetric]:
    """The metrics with a curve panel: those some finished cell evaluated during or after training.

    A metric in a cell's `eval_history` at one epoch only (evaluated after the last epoch)
    still gets its panel, where it is drawn as a point; one never evaluated on the way
    (only in `metrics`) does not.
    """
    return [m for m in metrics if any(m.name in h for g in groups for r in g.ok for h in r.eval_history)]


def loss_name(result: RunResult) -> str | None:
    """The name of the loss a cell trained with (`config.parts.loss.name`), None when not recorded."""
    loss = ((result.config.get("parts") or {}).get("loss") or {})
    return loss.get("name") if isinstance(loss, dict) else None


def _markevery(points: int, most: int = 12) -> list[int]:
    """Which points of a curve of `points` show their marker: all of a curve of at most `most`
    points (a one-point curve is its marker), else every k-th and the last."""
    if points <= most:
        return list(range(points))
    step = math.ceil(points / (most - 1))
    return sorted({*range(0, points, step), points - 1})


def curves_figure(groups: list[Group], metrics: list[ReportMetric], path: Path,
                  baselines: Iterable[BaselineResult] = ()) -> Figure | None:
    """Training loss per epoch and one panel per metric of `curve_panels`, means over seeds.

    Losses of different kinds have scales of their own (NT-Xent near log of the batch size,
    a margin loss near its margin), so each loss gets its own row: its loss panel, titled
    with the loss, and the metric panels of the runs that trained with it (y axes of a
    metric shared between rows). One loss: a panel per loss and metric, as before. A run of
    one epoch, or a metric evaluated at one epoch, is its marker. Baselines are grey
    reference lines on the metric panels.
    """
    plotted = [g for g in groups if g.ok and all(r.train for r in g.ok)]
    if not plotted:
        return None
    panels = curve_panels(plotted, metrics)
    rows: dict[str | None, list[tuple[int, Group]]] = {}
    for index, g in enumerate(plotted):  # the index sets the group's style on every panel
        rows.setdefault(loss_name(g.ok[0]), []).append((index, g))
    by_label = baseline_groups(baselines)
    several = len(rows) > 1
    plt = _pyplot()
    with plt.rc_context(FONT):
        if several:
            fig, grid = plt.subplots(len(rows), 1 + len(panels), figsize=(5.0 * (1 + len(panels)), 3.8 * len(rows)),
                                     squeeze=False)
            for column in range(1, 1 + len(panels)):
                for ax in grid[1:, column]:
                    ax.sharey(grid[0, column])
            axes_rows = [list(row) for row in grid]
        else:
            fig, flat = _grid(plt, 1 + len(panels))
            axes_rows = [flat]
        shown: list[list[tuple[Any, list[Any], list[Any]]]] = []
        row_series: list[dict[str, Any]] = []
        any_reference = False
        for axes, (loss, members) in zip(axes_rows, rows.items()):
            loss_ax, metric_axes = axes[0], axes[1:]
            row: list[tuple[Any, list[Any], list[Any]]] = []
            series: dict[str, Any] = {}
            drawn = []
            # within a loss's row its name goes without saying
            labels = {id(g): Group(g.method, {k: v for k, v in g.settings.items() if k != LOSS_KEY}).label
                      if several else g.label for _, g in members}
            for index, g in members:
                losses = [r.train.loss_per_epoch for r in g.ok if r.train and r.train.loss_per_epoch]
                if not losses:
                    continue
                length = min(len(x) for x in losses)
                drawn.append(loss_ax.plot(
                    range(1, length + 1), [sum(x[i] for x in losses) / len(losses) for i in range(length)],
                    label=labels[id(g)], linewidth=1.6, markersize=5, markevery=_markevery(length),
                    **series_style(index),
                )[0])
                series.setdefault(labels[id(g)], drawn[-1])
            if drawn:
                row.append((loss_ax, drawn, []))
                loss_ax.set_ylabel("training loss" if several else "training loss (own loss of each run)")
                loss_ax.set_title(f"training loss: {loss}" if loss else "training loss")
            else:
                loss_ax.set_visible(False)
            for ax, metric in zip(metric_axes, panels):
                drawn = []
                for index, g in members:
                    epochs = sorted(set.intersection(
                        *({h["epoch"] for h in r.eval_history if metric.name in h} for r in g.ok)))
                    if not epochs:
                        continue
                    by_epoch = [[h[metric.name] for r in g.ok for h in r.eval_history
                                 if h["epoch"] == e and metric.name in h] for e in epochs]
                    drawn.append(ax.plot(epochs, [metric.scale * sum(v) / len(v) for v in by_epoch],
                                         label=labels[id(g)], linewidth=1.6, markersize=6,
                                         markevery=_markevery(len(epochs)), **series_style(index))[0])
                    series.setdefault(labels[id(g)], drawn[-1])
                if not drawn:  # no run of this loss evaluated it: no empty panel
                    ax.set_visible(False)
                    continue
                refs = _draw_baselines(ax, by_label, metric)
                any_reference = any_reference or bool(refs)
                row.append((ax, drawn, refs))
                ax.set_ylabel(metric.label)
                ax.set_title(f"{metric.info.label}: {loss}" if several and loss else metric.info.label)
            for ax, drawn, _ in row:
                ax.set_xlabel("epoch")
                last = max(max(line.get_xdata()) for line in drawn)
                ax.set_xlim(0.5, last + 0.5)  # whole epochs, a one-epoch run's point in the middle
                ax.xaxis.set_major_locator(plt.matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
                ax.grid(alpha=0.3)
            shown.append(row)
            row_series.append(series)
        fig.suptitle("Training curves (mean over seeds)" + ("; one row per loss" if several else ""))
        texts = [(ax, _label_baselines(ax, refs)) for row in shown for ax, _, refs in row]
        fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_INCHES / fig.get_figheight()))  # room for the suptitle
        for ax, placed in texts:
            _space_labels(ax, placed)
        for row, series in zip(shown, row_series):
            if len(series) > CROWDED_LEGEND and row:
                if several:  # the row's legend, to the right of the row
                    boxes = [ax.get_position() for ax, _, _ in row]
                    top, bottom = max(b.y1 for b in boxes), min(b.y0 for b in boxes)
                    _outside_legend(fig, list(series.values()), (top + bottom) / 2,
                                    (top - bottom) * fig.get_figheight() * 1.15)
                else:
                    _outside_legend(fig, list(series.values()))
            else:
                for ax, handles, _ in row:
                    _panel_legend(ax, handles)
        _save(fig, path)
        plt.close(fig)
    evaluated = f" and {', '.join(m.info.label for m in panels)} at each evaluation" if panels else ""
    caption = f"Training loss per epoch{evaluated}, mean over seeds"
    if several:
        caption += "; one row per loss, each on its own loss axis (" + ", ".join(str(n) for n in rows) + ")"
    caption += "; a single marker is a run of one epoch or a metric evaluated once"
    if any_reference:
        caption += f"; {BASELINES_CAPTION}"
    return Figure(path, caption + ".")


def metric_curves_figure(groups: list[Group], metrics: list[ReportMetric], path: Path,
                         title: str = "Representation diagnostics during training (mean over seeds)") -> Figure | None:
    """One panel per metric (at most three a row), every group on it, against epoch.

    For metrics whose scale does not depend on the loss (the diagnostics), so all runs
    share a panel; a group keeps its style on every panel.
    """
    plotted = [g for g in groups if g.ok]
    panels = curve_panels(plotted, metrics)
    if not plotted or not panels:
        return None
    plt = _pyplot()
    with plt.rc_context(FONT):
        fig, axes = _grid(plt, len(panels))
        series: dict[str, Any] = {}
        drawn_axes = []
        for ax, metric in zip(axes, panels):
            drawn = []
            for index, g in enumerate(plotted):
                epochs = sorted(set.intersection(*({h["epoch"] for h in r.eval_history if metric.name in h} for r in g.ok)))
                if not epochs:
                    continue
                values = [[h[metric.name] for r in g.ok for h in r.eval_history if h["epoch"] == e and metric.name in h]
                          for e in epochs]
                drawn.append(ax.plot(epochs, [metric.scale * sum(v) / len(v) for v in values], label=g.label,
                                     linewidth=1.6, markersize=6, markevery=_markevery(len(epochs)),
                                     **series_style(index))[0])
                series.setdefault(g.label, drawn[-1])
            direction = "higher is better" if metric.info.higher_is_better else "lower is better"
            ax.set_title(f"{metric.info.label} ({direction})")
            ax.set_ylabel(metric.label)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(plt.matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
            ax.grid(alpha=0.3)
            drawn_axes.append((ax, drawn))
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_INCHES / fig.get_figheight()))  # room for the suptitle
        if len(series) > CROWDED_LEGEND:
            _outside_legend(fig, list(series.values()))
        else:
            for ax, drawn in drawn_axes:
                _panel_legend(ax, drawn)
        _save(fig, path)
        plt.close(fig)
    return Figure(path, f"{', '.join(m.info.label for m in panels)} at each evaluation, mean over seeds, "
                        "every run on each panel.")
