"""What each report figure shows, computed from the results: panels, series, values, labels, captions.

No drawing here (`cmp.report.figures` draws these with matplotlib), so what a figure shows
is a function of the groups, metrics and baselines alone. A series carries the index of
its group in the figure, which fixes its style on every panel; a baseline is a reference
value per metric panel, its mean over seeds. Values are as shown (percentages scaled).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cmp.api.results import BaselineResult, RunResult
from cmp.report.groups import Group, baseline_groups
from cmp.report.metrics import ReportMetric

BATCH_SIZE_KEY = "train.batch_size"
BUDGET_KEYS = ("train.steps", "train.epochs")
"""Swept keys that set a cell's training budget: its panel column, not its line."""
LOSS_KEY = "loss.name"
BASELINES_CAPTION = "dashed grey lines: baselines (mean over their seeds)"

Budget = tuple[str, int | None]
"""`("steps", S)` or `("epochs", E)`: how long a cell trained (None: not recorded)."""


@dataclass(frozen=True)
class Series:
    """One line of a panel: a group's values against x, and its index in the figure (its style)."""

    label: str
    index: int
    x: tuple[float, ...]
    y: tuple[float, ...]
    errors: tuple[float, ...] | None = None
    """Half-widths of the 95% intervals over seeds, drawn as error bars; None for a plain line."""


@dataclass(frozen=True)
class Reference:
    """A baseline's horizontal line on a metric panel: `raw_pixels 79.6` at 79.6; its index is its style."""

    label: str
    value: float
    index: int


@dataclass(frozen=True)
class Panel:
    """One plotting area: its titles, series and baselines, and its x axis."""

    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    references: tuple[Reference, ...] = ()
    xlim: tuple[float, float] | None = None
    batch_sizes: tuple[int, ...] = ()
    """A batch-size axis (log scale, ticked at these sizes); empty: an epoch axis of whole numbers."""


@dataclass(frozen=True)
class BatchSizeData:
    """Metrics against batch size: a row per metric, a column per training budget."""

    title: str
    caption: str
    rows: tuple[tuple[Panel | None, ...], ...]
    """None where no cell of that budget has the metric (no empty panel is drawn)."""


@dataclass(frozen=True)
class CurvesRow:
    """One loss's row of the training curves: its loss panel, then a panel per curve metric."""

    loss: Panel | None
    metrics: tuple[Panel | None, ...]


@dataclass(frozen=True)
class CurvesData:
    """Training loss and metrics against epoch: one row, or a row per loss when the runs used several."""

    title: str
    caption: str
    rows: tuple[CurvesRow, ...]


@dataclass(frozen=True)
class MetricCurvesData:
    """Metrics whose scale does not depend on the loss (the diagnostics) against epoch, every run on each panel."""

    title: str
    caption: str
    panels: tuple[Panel, ...]


def references(baselines: dict[str, list[BaselineResult]], metric: ReportMetric) -> tuple[Reference, ...]:
    """A reference per baseline label that has `metric`, at its mean over seeds, labelled with that mean."""
    lines = []
    for index, (label, runs) in enumerate(baselines.items()):
        values = [b.metrics[metric.name] for b in runs if metric.name in b.metrics]
        if not values:
            continue
        mean = metric.scale * sum(values) / len(values)
        lines.append(Reference(f"{label} {mean:.1f}" if metric.info.percent else f"{label} {mean:.3f}", mean, index))
    return tuple(lines)


# --- training budgets -----------------------------------------------------------------------------------


def budget(result: RunResult) -> Budget:
    """`("steps", S)` for a cell trained for a fixed number of steps, else `("epochs", E)`."""
    train = result.config.get("train") or {}
    if train.get("steps"):
        return ("steps", int(train["steps"]))
    epochs = train.get("epochs", result.train.epochs if result.train else None)
    return ("epochs", None if epochs is None else int(epochs))


def _budget_order(of: Budget) -> tuple[int, int]:
    """Fixed epochs before fixed steps, each by its count: the columns' order."""
    return (0 if of[0] == "epochs" else 1, of[1] or 0)


def _budget_at(of: Budget) -> str:
    """`at 10 epochs`, `at 400 steps`, or `` when the count is unknown."""
    kind, count = of
    if count is None:
        return ""
    return f"at {count} {kind[:-1] if count == 1 else kind}"


def budget_name(of: Budget) -> str:
    """`fixed epochs (10 epochs)` / `fixed steps (400 steps)`."""
    at = _budget_at(of)
    return f"fixed {of[0]} ({at[3:]})" if at else f"fixed {of[0]}"


# --- metrics against batch size -------------------------------------------------------------------------


Lines = dict[str, dict[Budget, dict[int, Group]]]
"""Line label -> training budget -> batch size -> the group of cells at that point."""


def batch_size_data(groups: list[Group], metrics: list[ReportMetric],
                    baselines: Iterable[BaselineResult] = ()) -> BatchSizeData | None:
    """Each metric against batch size, one line per method and other setting (SimCLR's figure 9).

    A cell's training budget is a fixed number of steps when its `train.steps` is set, else
    a fixed number of epochs; at a fixed number of epochs a larger batch makes fewer steps,
    so cells of different budgets are never on one line: a column per budget. None unless
    some line has more than one batch size.
    """
    lines = _batch_size_lines(groups)
    cells = [g for budgets in lines.values() for points in budgets.values() for g in points.values()]
    plotted = [m for m in metrics if any(g.metric(m.name) for g in cells)]
    if not plotted or not any(len(points) > 1 for budgets in lines.values() for points in budgets.values()):
        return None
    budgets = sorted({b for by_budget in lines.values() for b in by_budget}, key=_budget_order)
    by_label = baseline_groups(baselines)
    rows = tuple(tuple(_batch_size_panel(lines, metric, b, by_label) for b in budgets) for metric in plotted)
    title = "Metrics against batch size (mean ± 95% interval over seeds)"
    caption = ("Each metric against batch size (log scale), mean ± 95% interval over seeds, as in SimCLR's "
               "figure 9; one line per method and setting other than the batch size")
    if len(budgets) > 1:
        title += "\ncolumns: " + ", ".join(budget_name(b) for b in budgets)
        caption += ("; one column per training budget (" + ", ".join(budget_name(b) for b in budgets) + "): at a "
                    "fixed number of epochs a larger batch makes fewer optimiser steps, at a fixed number of steps "
                    "it sees more images; the y axes of a row are shared")
    if any(panel and panel.references for row in rows for panel in row):
        caption += f"; {BASELINES_CAPTION}"
    return BatchSizeData(title, caption + ".", rows)


def _batch_size_lines(groups: list[Group]) -> Lines:
    """The finished groups with a recorded batch size, by line (the group's label less batch size
    and budget), budget and batch size."""
    lines: Lines = {}
    for g in groups:
        if not g.ok:
            continue
        batch = (g.ok[0].config.get("train") or {}).get("batch_size")
        if batch is None or g.ok[0].train is None:  # an evaluate-only cell trained at no batch size
            continue
        rest = {k: v for k, v in g.settings.items() if k != BATCH_SIZE_KEY and k not in BUDGET_KEYS}
        lines.setdefault(Group(g.method, rest, source=g.source).label, {}).setdefault(budget(g.ok[0]), {})[batch] = g
    return lines


def _batch_size_panel(lines: Lines, metric: ReportMetric, of: Budget,
                      baselines: dict[str, list[BaselineResult]]) -> Panel | None:
    """One metric at one budget: a series per line that has it, x the batch sizes; None when no line has it."""
    series = []
    for index, (label, by_budget) in enumerate(lines.items()):
        points = by_budget.get(of, {})
        measured = [(s, e) for s, e in ((s, points[s].metric(metric.name)) for s in sorted(points)) if e is not None]
        if measured:
            series.append(Series(label, index, tuple(s for s, _ in measured),
                                 tuple(metric.scale * e.mean for _, e in measured),
                                 tuple(metric.scale * (e.half_width or 0.0) for _, e in measured)))
    if not series:
        return None
    sizes = sorted({s for by_budget in lines.values() for s in by_budget.get(of, {})})
    return Panel(f"{metric.info.label} {_budget_at(of)}".strip(), "batch size (log scale)", metric.label,
                 tuple(series), references(baselines, metric), (sizes[0] / 1.4, sizes[-1] * 1.4), tuple(sizes))


# --- training curves ------------------------------------------------------------------------------------


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


def curves_data(groups: list[Group], metrics: list[ReportMetric],
                baselines: Iterable[BaselineResult] = ()) -> CurvesData | None:
    """Training loss per epoch and one panel per metric of `curve_panels`, means over seeds.

    Losses of different kinds have scales of their own (NT-Xent near log of the batch size,
    a margin loss near its margin), so each loss gets its own row: its loss panel, titled
    with the loss, and the metric panels of the runs that trained with it. One loss: one
    row. Baselines are references on the metric panels. None when no finished group has
    training statistics.
    """
    plotted = [g for g in groups if g.ok and all(r.train for r in g.ok)]
    if not plotted:
        return None
    panels = curve_panels(plotted, metrics)
    by_loss: dict[str | None, list[tuple[int, Group]]] = {}
    for index, g in enumerate(plotted):  # the index sets the group's style on every panel
        by_loss.setdefault(loss_name(g.ok[0]), []).append((index, g))
    by_label = baseline_groups(baselines)
    several = len(by_loss) > 1
    rows = tuple(_curves_row(loss, members, panels, by_label, several) for loss, members in by_loss.items())
    evaluated = f" and {', '.join(m.info.label for m in panels)} at each evaluation" if panels else ""
    caption = f"Training loss per epoch{evaluated}, mean over seeds"
    if several:
        caption += "; one row per loss, each on its own loss axis (" + ", ".join(str(n) for n in by_loss) + ")"
    caption += "; a single marker is a run of one epoch or a metric evaluated once"
    if any(panel and panel.references for row in rows for panel in row.metrics):
        caption += f"; {BASELINES_CAPTION}"
    return CurvesData("Training curves (mean over seeds)" + ("; one row per loss" if several else ""),
                      caption + ".", rows)


def _curves_row(loss: str | None, members: list[tuple[int, Group]], panels: list[ReportMetric],
                baselines: dict[str, list[BaselineResult]], several: bool) -> CurvesRow:
    """The loss panel and metric panels of the groups that trained with `loss`; within a row
    of its own (`several`) the loss goes without saying in the groups' labels."""
    labels = {id(g): Group(g.method, {k: v for k, v in g.settings.items() if k != LOSS_KEY}, source=g.source).label
              if several else g.label for _, g in members}
    losses = tuple(s for index, g in members if (s := _loss_series(g, index, labels[id(g)])))
    loss_panel = Panel(f"training loss: {loss}" if loss else "training loss", "epoch",
                       "training loss" if several else "training loss (own loss of each run)",
                       losses, xlim=_whole_epochs(losses)) if losses else None
    metric_panels = []
    for metric in panels:
        series = tuple(s for index, g in members if (s := _epoch_series(g, metric, index, labels[id(g)])))
        metric_panels.append(Panel(
            f"{metric.info.label}: {loss}" if several and loss else metric.info.label, "epoch", metric.label,
            series, references(baselines, metric), _whole_epochs(series),
        ) if series else None)  # no run of this loss evaluated it: no empty panel
    return CurvesRow(loss_panel, tuple(metric_panels))


def _whole_epochs(series: tuple[Series, ...]) -> tuple[float, float]:
    """x limits of whole epochs, a one-epoch run's point in the middle."""
    return (0.5, max(max(s.x) for s in series) + 0.5)


def _loss_series(group: Group, index: int, label: str) -> Series | None:
    """The group's training loss per epoch, mean over seeds, as long as its shortest run's; None without one."""
    losses = [r.train.loss_per_epoch for r in group.ok if r.train and r.train.loss_per_epoch]
    if not losses:
        return None
    length = min(len(x) for x in losses)
    return Series(label, index, tuple(range(1, length + 1)),
                  tuple(sum(x[i] for x in losses) / len(losses) for i in range(length)))


def _epoch_series(group: Group, metric: ReportMetric, index: int, label: str) -> Series | None:
    """`metric` at the epochs every seed of the group evaluated it, mean over seeds; None at no such epoch."""
    epochs = sorted(set.intersection(*({h["epoch"] for h in r.eval_history if metric.name in h} for r in group.ok)))
    if not epochs:
        return None
    by_epoch = [[h[metric.name] for r in group.ok for h in r.eval_history if h["epoch"] == e and metric.name in h]
                for e in epochs]
    return Series(label, index, tuple(epochs), tuple(metric.scale * sum(v) / len(v) for v in by_epoch))


def metric_curves_data(groups: list[Group], metrics: list[ReportMetric],
                       title: str = "Representation diagnostics during training (mean over seeds)") -> MetricCurvesData | None:
    """One panel per metric of `curve_panels`, every finished group on it, against epoch.

    For metrics whose scale does not depend on the loss (the diagnostics), so all runs
    share a panel; a group keeps its style on every panel. None without such a metric.
    """
    plotted = [g for g in groups if g.ok]
    panels = curve_panels(plotted, metrics)
    if not plotted or not panels:
        return None
    drawn = tuple(
        Panel(f"{metric.info.label} ({'higher' if metric.info.higher_is_better else 'lower'} is better)", "epoch",
              metric.label, tuple(s for index, g in enumerate(plotted) if (s := _epoch_series(g, metric, index, g.label))))
        for metric in panels
    )
    return MetricCurvesData(title, f"{', '.join(m.info.label for m in panels)} at each evaluation, mean over seeds, "
                                   "every run on each panel.", drawn)
