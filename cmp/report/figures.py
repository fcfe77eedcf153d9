"""The report's figures drawn (PNG, matplotlib's Agg backend) from what `cmp.report.figure_data` says they show.

Every series has its own colour, line style and marker (`series_style`), the same on every
panel of a figure; baselines are grey dashed reference lines, their name and value written
at the line's end just right of the panel. A legend is on every panel, or, when there are
more than `CROWDED_LEGEND` series, one legend outside the plotting area (a legend per row of
a figure whose rows hold different runs). A series of one point (a run of one epoch, a
metric evaluated once) is drawn as its marker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult
from cmp.report.document import Figure
from cmp.report.embedding import EmbeddingMap
from cmp.report.figure_data import (
    BatchSizeData,
    CurvesData,
    MetricCurvesData,
    Panel,
    Series,
    batch_size_data,
    curves_data,
    metric_curves_data,
)
from cmp.report.groups import Group
from cmp.report.metrics import ReportMetric

TITLE_INCHES = 0.7
"""Height kept free above the panels for a figure's (up to two-line) title."""
CROWDED_LEGEND = 4
"""More series than this: one legend outside the panels instead of one on each (baselines are
labelled at their lines, not in legends)."""

# matplotlib's tab10 (Tableau 10), the colour-blind-friendly default cycle
SERIES_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
SERIES_LINESTYLES = ("-", "--", "-.", ":")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
BASELINE_LINESTYLES = ((0, (6, 3)), (0, (2, 2)), (0, (8, 3, 2, 3)), (0, (12, 4)), (0, (4, 2, 1, 2, 1, 2)))
BASELINE_GREYS = ("0.3", "0.55", "0.4", "0.65", "0.2")

FONT = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11, "ytick.labelsize": 11,
        "legend.fontsize": 11, "figure.titlesize": 14}
"""Sizes that stay readable when a report page (about 11 inches at 110 dpi) shrinks a figure of two
panels and an outside legend to its width."""
COLUMNS = 2
"""Panels a row in a grid of panels: three a row made the text too small at page width."""

Shown = tuple[Any, list[Any], list[Any]]
"""A drawn panel: its axes, its series' artists, its baselines' lines."""


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


# --- the three figures ----------------------------------------------------------------------------------


def batch_size_figure(groups: list[Group], metrics: list[ReportMetric], path: Path,
                      baselines: Iterable[BaselineResult] = ()) -> Figure | None:
    """Each metric against batch size (`figure_data.batch_size_data`) drawn to `path`; None when there is no such figure.

    With one budget a panel per metric, at most `COLUMNS` a row; with several a row per metric
    and a column per budget, the rows' y axes shared.
    """
    data = batch_size_data(groups, metrics, baselines)
    if data is None:
        return None
    _draw_batch_size(data, path)
    return Figure(path, data.caption)


def _draw_batch_size(data: BatchSizeData, path: Path) -> None:
    """One budget: panels `COLUMNS` a row; several: a row per metric, a column per budget, y shared along a row."""
    plt = _pyplot()
    with plt.rc_context(FONT):
        rows, columns = len(data.rows), len(data.rows[0])
        if columns == 1:
            fig, flat = _grid(plt, rows)
            axes = [[ax] for ax in flat]
        else:
            fig, grid = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.9 * rows), squeeze=False)
            for row in grid:
                for ax in row[1:]:
                    ax.sharey(row[0])
            axes = [list(row) for row in grid]
        shown = [drawn for row_axes, row in zip(axes, data.rows) for ax, panel in zip(row_axes, row)
                 if (drawn := _draw_panel(plt, ax, panel))]
        _title_and_layout(fig, data.title, shown)
        _legends(fig, [shown], per_row=False)
        _save(fig, path)
        plt.close(fig)


def curves_figure(groups: list[Group], metrics: list[ReportMetric], path: Path,
                  baselines: Iterable[BaselineResult] = ()) -> Figure | None:
    """Training loss and metrics per epoch (`figure_data.curves_data`) drawn to `path`; None without training statistics.

    A row per loss when the runs used several (y axes of a metric shared between rows, a
    legend per row when crowded), else one row of panels, at most `COLUMNS` a row.
    """
    data = curves_data(groups, metrics, baselines)
    if data is None:
        return None
    _draw_curves(data, path)
    return Figure(path, data.caption)


def _draw_curves(data: CurvesData, path: Path) -> None:
    """Several losses: a row each, a metric's y axis shared down its column; one: panels `COLUMNS` a row."""
    plt = _pyplot()
    several = len(data.rows) > 1
    columns = 1 + len(data.rows[0].metrics)
    with plt.rc_context(FONT):
        if several:
            fig, grid = plt.subplots(len(data.rows), columns, figsize=(5.0 * columns, 3.8 * len(data.rows)),
                                     squeeze=False)
            for column in range(1, columns):
                for ax in grid[1:, column]:
                    ax.sharey(grid[0, column])
            axes_rows = [list(row) for row in grid]
        else:
            fig, flat = _grid(plt, columns)
            axes_rows = [flat]
        shown_rows = []
        for axes, row in zip(axes_rows, data.rows):
            loss = _draw_panel(plt, axes[0], row.loss, markersize=5)
            metric_panels = [_draw_panel(plt, ax, panel) for ax, panel in zip(axes[1:], row.metrics)]
            shown_rows.append([drawn for drawn in (loss, *metric_panels) if drawn])
        _title_and_layout(fig, data.title, [drawn for row in shown_rows for drawn in row])
        _legends(fig, shown_rows, per_row=several)
        _save(fig, path)
        plt.close(fig)


def metric_curves_figure(groups: list[Group], metrics: list[ReportMetric], path: Path,
                         title: str = "Representation diagnostics during training (mean over seeds)") -> Figure | None:
    """One panel per metric, every group on it, against epoch (`figure_data.metric_curves_data`), drawn to `path`."""
    data = metric_curves_data(groups, metrics, title)
    if data is None:
        return None
    _draw_metric_curves(data, path)
    return Figure(path, data.caption)


def _draw_metric_curves(data: MetricCurvesData, path: Path) -> None:
    """The panels `COLUMNS` a row, one legend for all when crowded."""
    plt = _pyplot()
    with plt.rc_context(FONT):
        fig, axes = _grid(plt, len(data.panels))
        shown = [drawn for ax, panel in zip(axes, data.panels) if (drawn := _draw_panel(plt, ax, panel))]
        _title_and_layout(fig, data.title, shown)
        _legends(fig, [shown], per_row=False)
        _save(fig, path)
        plt.close(fig)


def panel_figure(panel: Panel, path: Path, caption: str) -> Figure:
    """One panel (`cmp.report.compute.time_panel`: accuracy against training time) drawn to `path` under its
    own title, wide enough to read at page width, one legend outside it when crowded."""
    plt = _pyplot()
    with plt.rc_context(FONT):
        fig, axes = _grid(plt, 1, width=7.5, height=4.6)
        ax, handles, lines = _draw_panel(plt, axes[0], panel) or (axes[0], [], [])
        texts = _label_baselines(ax, lines)
        fig.tight_layout()
        _space_labels(ax, texts)
        _legends(fig, [[(ax, handles, lines)]], per_row=False)
        _save(fig, path)
        plt.close(fig)
    return Figure(path, caption)


def embedding_figure(maps: Sequence[EmbeddingMap], path: Path) -> Figure:
    """Each group's embedding map (`cmp.report.embedding`), four a row, points coloured by class, one class legend."""
    plt = _pyplot()
    classes = sorted({int(c) for m in maps for c in m.labels})
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    colour = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    columns = min(4, len(maps))
    rows = math.ceil(len(maps) / columns)
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.6 * rows), squeeze=False)
        flat = [ax for row in axes for ax in row]
        for ax in flat[len(maps):]:
            ax.set_visible(False)
        for ax, m in zip(flat, maps):
            ax.scatter(m.points[:, 0], m.points[:, 1], s=4, c=[colour[int(c)] for c in m.labels], linewidths=0)
            ax.set_title(m.label if len(m.label) <= 40 else m.label[:39] + "…", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [plt.matplotlib.lines.Line2D([], [], marker="o", linestyle="", color=colour[c], label=str(c))
                   for c in classes]
        fig.tight_layout()
        _outside_legend(fig, handles).set_title("class")
        _save(fig, path)
        plt.close(fig)
    points = ", ".join(sorted({str(len(m.points)) for m in maps}))
    return Figure(path, f"t-SNE maps (scikit-learn) of {points} test images' encoder features per run (the first "
                        "seed that saved them), coloured by class; positions and axes of different maps are not "
                        "comparable, only how classes group within each.")


# --- drawing one panel ----------------------------------------------------------------------------------


def _pyplot() -> Any:
    """pyplot on the Agg backend (files only, no display), imported when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, panels: int, width: float = 5.2, height: float = 3.9) -> tuple[Any, list[Any]]:
    """A figure with `panels` axes, at most `COLUMNS` a row; unused axes are hidden."""
    columns = min(COLUMNS, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def _draw_panel(plt: Any, ax: Any, panel: Panel | None, markersize: float = 6) -> Shown | None:
    """`panel` on `ax`: its series, its baselines' lines, titles and x axis; None (the axes hidden) for no panel."""
    if panel is None:
        ax.set_visible(False)
        return None
    drawn = [_draw_series(ax, series, markersize) for series in panel.series]
    lines = [ax.axhline(r.value, label=r.label, gid="baseline", zorder=1, **baseline_style(r.index))
             for r in panel.references]
    if panel.batch_sizes:
        ax.set_xscale("log", base=2)
    if panel.xlim is not None:
        ax.set_xlim(*panel.xlim)
    if panel.batch_sizes:
        ax.set_xticks(list(panel.batch_sizes), [str(s) for s in panel.batch_sizes])
        ax.xaxis.set_minor_locator(plt.matplotlib.ticker.NullLocator())
    else:
        ax.xaxis.set_major_locator(plt.matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title)
    ax.grid(alpha=0.3)
    return (ax, drawn, lines)


def _draw_series(ax: Any, series: Series, markersize: float) -> Any:
    """A series with error bars as an errorbar plot, else as a line whose markers `_markevery` thins."""
    style = series_style(series.index)
    if series.errors is not None:
        return ax.errorbar(list(series.x), list(series.y), yerr=list(series.errors), capsize=3, linewidth=1.6,
                           markersize=markersize, label=series.label, **style)
    return ax.plot(list(series.x), list(series.y), label=series.label, linewidth=1.6, markersize=markersize,
                   markevery=_markevery(len(series.x)), **style)[0]


def _markevery(points: int, most: int = 12) -> list[int]:
    """Which points of a curve of `points` show their marker: all of a curve of at most `most`
    points (a one-point curve is its marker), else every k-th and the last."""
    if points <= most:
        return list(range(points))
    step = math.ceil(points / (most - 1))
    return sorted({*range(0, points, step), points - 1})


# --- titles, baseline labels, legends -------------------------------------------------------------------


def _title_and_layout(fig: Any, title: str, shown: Sequence[Shown]) -> None:
    """The figure's title, each baseline's label beside its panel, and a layout that leaves room for both."""
    fig.suptitle(title)
    labels = [(ax, _label_baselines(ax, lines)) for ax, _, lines in shown]
    fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_INCHES / fig.get_figheight()))  # room for the suptitle
    for ax, texts in labels:
        _space_labels(ax, texts)


def _label_baselines(ax: Any, lines: Sequence[Any]) -> list[Any]:
    """Each baseline line's label as text just outside the panel's right edge, at the line's
    height, so that it never covers data; the texts made. Call before `tight_layout` (which
    then leaves them room) and `_space_labels` after it."""
    texts = [ax.annotate(line.get_label(), xy=(1.0, line.get_ydata()[0]), xycoords=ax.get_yaxis_transform(),
                         xytext=(4.0, 0.0), textcoords="offset points", ha="left", va="center", fontsize=10,
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


def _legends(fig: Any, rows: Sequence[Sequence[Shown]], per_row: bool) -> None:
    """A legend on each panel of a row, or, when the row has more than `CROWDED_LEGEND` series,
    one to the right: of the row (`per_row`, rows holding different runs) or of the figure."""
    for row in rows:
        series: dict[str, Any] = {}
        for _, handles, _ in row:
            for handle in handles:
                series.setdefault(handle.get_label(), handle)
        if len(series) > CROWDED_LEGEND and row:
            if per_row:
                boxes = [ax.get_position() for ax, _, _ in row]
                top, bottom = max(b.y1 for b in boxes), min(b.y0 for b in boxes)
                _outside_legend(fig, list(series.values()), (top + bottom) / 2,
                                (top - bottom) * fig.get_figheight() * 1.15)
            else:
                _outside_legend(fig, list(series.values()))
        else:
            for ax, handles, _ in row:
                _panel_legend(ax, handles)


def _legend_columns(entries: int, height_in: float) -> int:
    """Legend columns so that `entries` rows of 11-point text fit in `height_in` inches."""
    return max(1, math.ceil(entries / max(1, int(height_in / 0.25))))


def _outside_legend(fig: Any, handles: Sequence[Any], y: float = 0.5, height_in: float | None = None) -> Any:
    """A figure legend to the right of the panels, centred at figure height `y` (saved with bbox_inches="tight")."""
    height = height_in if height_in is not None else fig.get_figheight()
    return fig.legend(handles=list(handles), labels=[h.get_label() for h in handles], loc="center left",
                      bbox_to_anchor=(1.0, y), ncols=_legend_columns(len(handles), height), frameon=False)


def _panel_legend(ax: Any, handles: Sequence[Any]) -> None:
    """The panel's own legend of its series, where it covers least."""
    if handles:
        ax.legend(handles=list(handles), labels=[h.get_label() for h in handles], loc="best", framealpha=0.85)


def _save(fig: Any, path: Path) -> None:
    """The PNG, cropped to what was drawn (outside legends and baseline labels included)."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
