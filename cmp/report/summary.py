"""The terminal summary at the end of `cmp run`: one row per cell, then the baselines."""

from __future__ import annotations

from cmp.api.results import BaselineResult, RunResult
from cmp.report.groups import weights_source
from cmp.report.metrics import ReportMetric, report_metrics


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def summary_table(results: list[RunResult], baselines: list[BaselineResult]) -> str:
    """Each metric (in % where it is a percentage), wall time and images/s for every cell and baseline."""
    metrics = report_metrics(results, baselines)
    header = ["run", "status", *(m.name for m in metrics), "wall time", "images/s"]
    rows = []
    for r in results:
        ips = r.train.images_per_s if r.train else None
        rows.append([
            _cell_label(r), "cached" if r.cached else r.status, *(m.format_value(r.metrics.get(m.name)) for m in metrics),
            _duration(r.wall_time_s), "-" if ips is None else f"{ips:,.0f}",
        ])
    for b in baselines:
        rows.append([
            f"{b.label} (baseline)", "cached" if b.cached else b.status,
            *(m.format_value(b.metrics.get(m.name)) for m in metrics), _duration(b.wall_time_s), "-",
        ])
    table = format_table(rows, header)
    verdicts = best_against_baselines(results, baselines, metrics)
    if verdicts:
        table += "\n\n" + "\n".join(verdicts)
    failures = [f"  {r.cell}: {r.reason}" for r in results if not r.ok]
    if failures:
        table += "\n\nfailed:\n" + "\n".join(failures)
    return table


def _cell_label(result: RunResult) -> str:
    """The cell's name, with where its weights came from when they came from a file."""
    source = weights_source(result)
    return f"{result.cell} [{source}]" if source else result.cell


def best_against_baselines(
    results: list[RunResult], baselines: list[BaselineResult], metrics: list[ReportMetric]
) -> list[str]:
    """Per metric, the top finished cell (highest or lowest, as declared) and its margin over each baseline;
    said to be one cell, since a ranking needs the paired tests the report makes."""
    lines = []
    for metric in metrics:
        scored = [(r.metrics[metric.name], _cell_label(r)) for r in results if r.ok and metric.name in r.metrics]
        if not scored:
            continue
        value, cell = max(scored) if metric.info.higher_is_better else min(scored)
        by_label: dict[str, list[float]] = {}
        for b in baselines:
            if metric.name in b.metrics:
                by_label.setdefault(b.label, []).append(b.metrics[metric.name])
        margins = [
            f"{metric.scale * (value - sum(v) / len(v)):+.{metric.digits}f} vs {label}" for label, v in by_label.items()
        ]
        lines.append(f"top cell on {metric.name}: {cell} {metric.format_value(value)}"
                     + (f" ({', '.join(margins)})" if margins else ""))
    if lines:
        lines.append("(one cell each, not a ranking: the report's summary names a best method only where the "
                     "paired tests over seeds show one)")
    return lines
