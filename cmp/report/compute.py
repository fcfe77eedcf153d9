"""Compute accounting: what each method cost to get good enough, from its during-training evaluation.

"Good enough" is a share of the method's gain over the random encoder (its final value of
the accounted metric, kNN top-1, minus the random-encoder baseline's), not of its final
accuracy: a random encoder already has most of a trained one's kNN on small data sets, so
90 % of the final accuracy would be reached before training. The first evaluation at or
above the random encoder's value plus 90 % (95 %) of the gain gives the images seen and the
training time to it.

Evaluations during training run on a fixed subset of images while the final value and the
baselines use every image, so each cell's curve is shifted by the difference between its
last point and its final value on every image (zero when no subset was used) before it is
compared with them; the captions say so. Curves are means over a group's seeds at the
epochs every seed evaluated; time and images at an epoch are the cell's totals prorated
by the steps done by then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cmp.api.results import BaselineResult, RunResult
from cmp.report.document import Table
from cmp.report.figure_data import Panel, Reference, Series, references
from cmp.report.groups import Group, baseline_groups
from cmp.report.metrics import ReportMetric

RANDOM_ENCODER = "random_init"
"""The baseline component whose value is the floor a method's gain is measured from."""
SHARES = (0.90, 0.95)


@dataclass(frozen=True)
class Curve:
    """A group's accounted metric (shifted, as a fraction) against training time and images seen, mean over seeds."""

    epochs: tuple[int, ...]
    seconds: tuple[float, ...]
    images: tuple[float, ...]
    values: tuple[float, ...]


def accounted_metric(results: Sequence[RunResult], metrics: Sequence[ReportMetric]) -> ReportMetric | None:
    """The metric accounted for: kNN top-1 where evaluated during training, else the first such percentage metric."""
    evaluated = [m for m in metrics if m.info.percent and any(m.name in h for r in results for h in r.eval_history[:-1])]
    preferred = [m for m in evaluated if m.name == "knn_top1"]
    chosen = preferred or evaluated
    return chosen[0] if chosen else None


def _progress(result: RunResult, epoch: int) -> float:
    """The share of the cell's steps done after `epoch` epochs."""
    stats = result.train
    if stats is None or not stats.steps:
        return 0.0
    per_epoch = (result.train_images or 0) // stats.batch_size
    if per_epoch <= 0:
        return min(1.0, epoch / max(1, stats.epochs))
    return min(1.0, epoch * per_epoch / stats.steps)


def curve(group: Group, metric: str) -> Curve | None:
    """The group's shifted curve at the epochs every seed evaluated; None without an evaluation before the last."""
    runs = [r for r in group.ok if r.train and metric in r.metrics and any(metric in h for h in r.eval_history)]
    if not runs or len(runs) < len(group.ok):
        return None
    epochs = sorted(set.intersection(*({int(h["epoch"]) for h in r.eval_history if metric in h} for r in runs)))
    if len(epochs) < 2:
        return None
    seconds, images, values = [], [], []
    for epoch in epochs:
        points = []
        for r in runs:
            history = {int(h["epoch"]): h[metric] for h in r.eval_history if metric in h}
            shift = r.metrics[metric] - history[max(history)]
            stats = r.train
            assert stats is not None
            done = _progress(r, epoch)
            seen = stats.images_seen if stats.images_seen is not None else stats.steps * stats.batch_size
            points.append((stats.train_time_s * done, seen * done, history[epoch] + shift))
        seconds.append(sum(p[0] for p in points) / len(points))
        images.append(sum(p[1] for p in points) / len(points))
        values.append(sum(p[2] for p in points) / len(points))
    return Curve(tuple(epochs), tuple(seconds), tuple(images), tuple(values))


def random_encoder_value(group: Group, baselines: Sequence[BaselineResult], metric: str) -> float | None:
    """The random-encoder baseline's mean for this group's encoder: the only such baseline, or the one naming the encoder."""
    found = {label: runs for label, runs in baseline_groups(baselines).items()
             if runs[0].baseline == RANDOM_ENCODER and any(metric in b.metrics for b in runs)}
    if len(found) > 1:
        encoder = str(((group.ok[0].config.get("parts") or {}).get("encoder") or {}).get("name", ""))
        found = {label: runs for label, runs in found.items() if f"({encoder}" in label}
    if len(found) != 1:
        return None
    values = [b.metrics[metric] for b in next(iter(found.values())) if metric in b.metrics]
    return sum(values) / len(values)


def compute_table(groups: Sequence[Group], baselines: Sequence[BaselineResult], metric: ReportMetric) -> Table:
    """Per group: the gain over the random encoder, images and training time to 90 % and 95 % of it, images/s, peak memory."""
    rows = []
    for g in (g for g in groups if g.ok):
        rows.append([g.label, str(len(g.ok)), *_reach_cells(g, baselines, metric), _spread(g, "images_per_s", 0),
                     _spread(g, "peak_memory_mb", 0)])
    shares = [f"{100 * s:.0f} %" for s in SHARES]
    header = ["run", "seeds", f"{metric.info.label} gain over random encoder (points)",
              *(f"{kind} to {share}" for share in shares for kind in ("images", "train time (s)")),
              "images/s", "peak memory (MB)"]
    return Table(header, rows, (
        f"Gain: the final {metric.info.label} minus the random-encoder baseline's. Images seen and training-loop time "
        f"(evaluation excluded) at the first evaluation during training at or above the random encoder plus that share "
        f"of the gain; an epoch's time and images are the cell's prorated by its steps, mean over seeds; the resolution "
        f"is the evaluation interval (`train.eval_every`). Evaluations on a subset of images are shifted so the last "
        f"equals the final value on every image. Images/s and peak memory: mean over the cells (range where they "
        f"differ); peak memory as each cell recorded it (since this version the cell's own: on a CPU its resident set "
        f"size sampled while it ran, on CUDA the memory allocated; before, on a CPU, the process's peak so far)."))


def _reach_cells(group: Group, baselines: Sequence[BaselineResult], metric: ReportMetric) -> list[str]:
    """The gain, then images and time to each share, or what stands in the way said plainly."""
    final = group.metric(metric.name)
    floor = random_encoder_value(group, baselines, metric.name)
    blank = ["-"] * (2 * len(SHARES))
    if final is None:
        return ["-", *blank]
    if floor is None:
        return ["no random-encoder baseline", *blank]
    gain = final.mean - floor
    sign = 1.0 if metric.info.higher_is_better else -1.0
    text = f"{metric.scale * gain:+.{metric.digits}f}"
    if sign * gain <= 0:
        return [text + " (no gain)", *blank]
    found = curve(group, metric.name)
    if found is None:
        return [text, "no during-training evaluation", *(["-"] * (2 * len(SHARES) - 1))]
    cells = [text]
    for share in SHARES:
        target = floor + share * gain
        at = next((i for i, v in enumerate(found.values) if sign * (v - target) >= 0), None)
        if at is None:
            cells += ["not reached", "not reached"]
        else:
            cells += [f"{found.images[at]:,.0f} (epoch {found.epochs[at]})", f"{found.seconds[at]:,.1f}"]
    return cells


def _spread(group: Group, field: str, digits: int) -> str:
    """Mean over the group's cells, with the range when the cells differ: `1,313 (1,290–1,330)`."""
    values = [v for r in group.ok
              if isinstance(v := (getattr(r.train, field, None) if field == "images_per_s" else getattr(r, field)), float | int)]
    if not values:
        return "-"
    mean = f"{sum(values) / len(values):,.{digits}f}"
    low, high = min(values), max(values)
    return mean if round(low, digits) == round(high, digits) else f"{mean} ({low:,.{digits}f}–{high:,.{digits}f})"


def time_panel(groups: Sequence[Group], baselines: Sequence[BaselineResult], metric: ReportMetric) -> Panel | None:
    """The accounted metric against training time, a line per group, the baselines as horizontal lines."""
    series = []
    for index, g in enumerate(groups):
        if g.ok and (found := curve(g, metric.name)) is not None:
            series.append(Series(g.label, index, found.seconds, tuple(metric.scale * v for v in found.values)))
    if not series:
        return None
    right = max(max(s.x) for s in series)
    lines: tuple[Reference, ...] = references(baseline_groups(baselines), metric)
    return Panel(f"{metric.info.label} against training time (mean over seeds)", "training time (s, training loop only)", metric.label,
                 tuple(series), lines, (0.0, right * 1.03))


__all__ = ["SHARES", "accounted_metric", "compute_table", "curve", "random_encoder_value", "time_panel"]
