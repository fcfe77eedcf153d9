"""The terminal summary at the end of `cmp run`: one row per cell, then the baselines."""

from __future__ import annotations

from typing import Any


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "-"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def summary_table(results: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> str:
    """Top-1 (%) per evaluator, wall time and images/s for every cell and baseline."""
    metric_names: list[str] = []
    for r in results + baselines:
        for name in r.get("metrics", {}):
            if name not in metric_names:
                metric_names.append(name)
    header = ["run", "status", *metric_names, "time", "images/s"]
    rows = []
    for r in results:
        status = "cached" if r.get("cached") else r.get("status", "?")
        ips = r.get("train", {}).get("images_per_s")
        rows.append([
            r.get("cell", r.get("method", "?")), status,
            *(_pct(r.get("metrics", {}).get(m)) for m in metric_names),
            _duration(r.get("wall_time_s")), f"{ips:,.0f}" if isinstance(ips, (int, float)) else "-",
        ])
    for b in baselines:
        rows.append([
            f"{b['label']} (baseline)", "cached" if b.get("cached") else b.get("status", "ok"),
            *(_pct(b.get("metrics", {}).get(m)) for m in metric_names), _duration(b.get("wall_time_s")), "-",
        ])
    table = format_table(rows, header)
    verdicts = best_against_baselines(results, baselines, metric_names)
    if verdicts:
        table += "\n\n" + "\n".join(verdicts)
    failures = [f"  {r.get('cell')}: {r.get('reason')}" for r in results if r.get("status") == "failed"]
    if failures:
        table += "\n\nfailed:\n" + "\n".join(failures)
    return table


def best_against_baselines(
    results: list[dict[str, Any]], baselines: list[dict[str, Any]], metric_names: list[str]
) -> list[str]:
    """Per metric, the best finished cell and its margin in points over each baseline."""
    lines = []
    for metric in metric_names:
        scored = [(r["metrics"][metric], r.get("cell", "?")) for r in results
                  if r.get("status") == "ok" and isinstance(r.get("metrics", {}).get(metric), (int, float))]
        if not scored:
            continue
        value, cell = max(scored)
        by_label: dict[str, list[float]] = {}
        for b in baselines:
            if isinstance(b.get("metrics", {}).get(metric), (int, float)):
                by_label.setdefault(b["label"], []).append(b["metrics"][metric])
        margins = [f"{100 * (value - sum(v) / len(v)):+.2f} vs {label}" for label, v in by_label.items()]
        lines.append(f"best {metric}: {cell} {100 * value:.2f}" + (f" ({', '.join(margins)})" if margins else ""))
    return lines
