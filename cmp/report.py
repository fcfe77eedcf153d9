"""Comparison reports: results of a recipe's cells -> Markdown, self-contained HTML, CSV, JSON.

Cells that differ only by `train.seed` form a group, summarised as mean ± 95% interval.
The report holds the method table (with baselines), accuracy against batch size (SimCLR's
figure 9) when batch sizes were swept, the loss table (losses x negative sources, its
table 2) when losses were swept, training-loss and kNN-by-epoch curves, and the failed
cells with their reasons. One document model is rendered twice, so the two never differ.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmp.stats import Estimate, estimate

SEED_KEY = "train.seed"
METRIC_LABELS = {"knn_top1": "kNN top-1 (%)", "linear_top1": "linear top-1 (%)"}


@dataclass
class Group:
    """Cells of one method and one setting of the swept keys, over seeds."""

    method: str
    settings: dict[str, Any]
    ok: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        if not self.settings:
            return self.method
        return f"{self.method} ({', '.join(f'{_short_key(k)}={_value(v)}' for k, v in self.settings.items())})"

    def metric(self, name: str) -> Estimate | None:
        values = [r["metrics"][name] for r in self.ok if name in r.get("metrics", {})]
        return estimate(values) if values else None

    def mean_of(self, *path: str) -> float | None:
        values = [_dig(r, path) for r in self.ok]
        numbers = [v for v in values if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers) if numbers else None


def _dig(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _short_key(key: str) -> str:
    """`loss.name` -> `loss`, `train.batch_size` -> `batch_size`, `loss.params.margin` -> `loss.margin`."""
    parts = [p for p in key.split(".") if p != "params"]
    if parts[0] in ("train", "data") and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "name" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _order(result: dict[str, Any]) -> tuple[Any, ...]:
    """Sort by method, then swept values, numbers numerically."""
    sweep = result.get("sweep") or {}
    values = tuple((k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, json.dumps(v))) for k, v in sorted(sweep.items()))
    return (str(result.get("method")), values)


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def group_results(results: Iterable[dict[str, Any]]) -> list[Group]:
    """Group cells by method and swept values other than the seed, in first-seen order."""
    groups: dict[str, Group] = {}
    for r in results:
        settings = {k: v for k, v in (r.get("sweep") or {}).items() if k != SEED_KEY}
        key = json.dumps([r.get("method"), settings], sort_keys=True)
        group = groups.setdefault(key, Group(str(r.get("method")), settings))
        (group.ok if r.get("status") == "ok" else group.failed).append(r)
    return list(groups.values())


def metric_names(results: Iterable[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in results:
        for name in r.get("metrics", {}):
            if name not in names:
                names.append(name)
    return names


# ----------------------------------------------------------------------------- document model


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[Any] = field(default_factory=list)


# ----------------------------------------------------------------------------- sections


def method_table(groups: list[Group], baselines: list[dict[str, Any]], metrics: list[str]) -> Table:
    header = ["run", "seeds", *(METRIC_LABELS.get(m, m) for m in metrics), "train time (s)", "images/s", "peak memory (MB)"]
    rows = []
    for g in groups:
        if not g.ok:
            continue
        cells = [(g.metric(m).format() if g.metric(m) else "-") for m in metrics]
        rows.append([
            g.label, str(len(g.ok)), *cells,
            _num(g.mean_of("train", "train_time_s"), 1), _num(g.mean_of("train", "images_per_s"), 0),
            _num(g.mean_of("peak_memory_mb"), 0),
        ])
    for label, items in _baseline_groups(baselines).items():
        cells = []
        for m in metrics:
            values = [b["metrics"][m] for b in items if m in b.get("metrics", {})]
            cells.append(estimate(values).format() if values else "-")
        rows.append([f"baseline: {label}", str(len(items)), *cells, "-", "-", "-"])
    return Table(header, rows, "Mean ± 95% interval (Student t) over seeds; one value where a single seed ran. "
                 "A baseline's seeds are those of the cells that asked for it.")


def _baseline_groups(baselines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for b in baselines:
        if b.get("status", "ok") == "ok":
            grouped.setdefault(b["label"], []).append(b)
    return grouped


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def loss_table(results: list[dict[str, Any]], metric: str) -> Table | None:
    """Losses x negative sources (SimCLR's table 2), when more than one loss was run."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r.get("status") != "ok" or metric not in r.get("metrics", {}):
            continue
        parts = r["config"]["parts"]
        cells.setdefault((loss_label(parts["loss"]), f"{r['method']} ({parts['negative_source']['name']})"), []).append(
            r["metrics"][metric]
        )
    losses = sorted({k[0] for k in cells})
    columns = sorted({k[1] for k in cells})
    if len(losses) < 2:
        return None
    rows = [[loss, *(estimate(cells[(loss, c)]).format() if (loss, c) in cells else "-" for c in columns)] for loss in losses]
    return Table(["loss", *columns], rows, f"{METRIC_LABELS.get(metric, metric)}, mean ± 95% interval over seeds.")


def loss_label(loss: dict[str, Any]) -> str:
    params = loss.get("params", {})
    extras = []
    if params.get("semi_hard"):
        extras.append("semi-hard")
    if "temperature" in params:
        extras.append(f"t={params['temperature']}")
    if "margin" in params:
        extras.append(f"m={params['margin']}")
    return f"{loss['name']} ({', '.join(extras)})" if extras else loss["name"]


# ----------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def batch_size_figure(groups: list[Group], metrics: list[str], path: Path) -> Figure | None:
    """Top-1 against batch size, one line per method and other setting (SimCLR's figure 9)."""
    lines: dict[str, dict[int, Group]] = {}
    for g in groups:
        if not g.ok:
            continue
        batch = g.ok[0]["config"]["train"]["batch_size"]
        rest = {k: v for k, v in g.settings.items() if k != "train.batch_size"}
        label = Group(g.method, rest).label
        lines.setdefault(label, {})[batch] = g
    if not any(len(points) > 1 for points in lines.values()):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, points in lines.items():
            sizes = sorted(points)
            est = [points[s].metric(metric) for s in sizes]
            xs = [s for s, e in zip(sizes, est) if e is not None]
            ys = [100 * e.mean for e in est if e is not None]
            errs = [100 * (e.half_width or 0.0) for e in est if e is not None]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({s for p in lines.values() for s in p}))
        ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Top-1 against batch size (mean ± 95% interval over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Figure(path, "Accuracy against batch size, as in SimCLR's figure 9.")


def curves_figure(groups: list[Group], path: Path) -> Figure | None:
    """Training loss and kNN top-1 by epoch, averaged over seeds."""
    plotted = [g for g in groups if g.ok]
    if not plotted:
        return None
    plt = _pyplot()
    fig, (loss_ax, knn_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for g in plotted:
        losses = [r["train"]["loss_per_epoch"] for r in g.ok]
        length = min(len(x) for x in losses)
        mean = [sum(x[i] for x in losses) / len(losses) for i in range(length)]
        loss_ax.plot(range(1, length + 1), mean, label=g.label)
        epochs = sorted(set.intersection(*({h["epoch"] for h in r.get("eval_history", []) if "knn_top1" in h} for r in g.ok)))
        if epochs:
            by_epoch = [[h["knn_top1"] for r in g.ok for h in r["eval_history"] if h["epoch"] == e] for e in epochs]
            knn_ax.plot(epochs, [100 * sum(v) / len(v) for v in by_epoch], marker="o", label=g.label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (own loss of each run)")
    knn_ax.set_xlabel("epoch")
    knn_ax.set_ylabel("kNN top-1 (%)")
    for ax in (loss_ax, knn_ax):
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Figure(path, "Training loss per epoch and kNN top-1 at each evaluation, mean over seeds.")


# ----------------------------------------------------------------------------- rendering


def render_markdown(title: str, intro: list[str], sections: list[Section]) -> str:
    out = [f"# {title}", "", *intro, ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(block.header) + " |")
                out.append("|" + "|".join(["---"] + ["---:"] * (len(block.header) - 1)) + "|")
                out += ["| " + " | ".join(row) + " |" for row in block.rows]
                if block.caption:
                    out += ["", f"*{block.caption}*"]
            elif isinstance(block, Figure):
                out.append(f"![{block.caption}]({block.path.name})")
                out += ["", f"*{block.caption}*"]
            else:
                out.append(str(block))
            out.append("")
    return "\n".join(out)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}"
    "td:not(:first-child){text-align:right}th{background:#f3f3f3}img{max-width:100%}"
    "caption{caption-side:bottom;font-style:italic;color:#555;padding-top:4px}code{background:#f3f3f3;padding:1px 4px}"
)


def render_html(title: str, intro: list[str], sections: list[Section]) -> str:
    """One page; figures are embedded as base64 PNG so the file stands alone."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    out += [f"<p>{_inline(p)}</p>" for p in intro if p]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("<table>")
                if block.caption:
                    out.append(f"<caption>{html.escape(block.caption)}</caption>")
                out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows]
                out.append("</table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode()
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.caption)}'>"
                           f"<figcaption><i>{html.escape(block.caption)}</i></figcaption></figure>")
            else:
                out.append(f"<p>{_inline(str(block))}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Markdown's `code` spans to <code>, the rest escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


# ----------------------------------------------------------------------------- files


CSV_COLUMNS = [
    "recipe", "method", "cell", "key", "status", "reason", "seed", "batch_size", "epochs", "loss",
    "negative_source", "knn_top1", "linear_top1", "final_loss", "train_time_s", "wall_time_s",
    "images_per_s", "peak_memory_mb", "sweep",
]


def csv_row(r: dict[str, Any]) -> dict[str, Any]:
    config = r.get("config", {})
    parts = config.get("parts", {})
    return {
        "recipe": r.get("recipe"), "method": r.get("method"), "cell": r.get("cell"), "key": r.get("key"),
        "status": r.get("status"), "reason": r.get("reason", ""),
        "seed": _dig(config, ("train", "seed")), "batch_size": _dig(config, ("train", "batch_size")),
        "epochs": _dig(config, ("train", "epochs")), "loss": loss_label(parts["loss"]) if parts.get("loss") else "",
        "negative_source": _dig(parts, ("negative_source", "name")),
        "knn_top1": _dig(r, ("metrics", "knn_top1")), "linear_top1": _dig(r, ("metrics", "linear_top1")),
        "final_loss": _dig(r, ("train", "final_loss")), "train_time_s": _dig(r, ("train", "train_time_s")),
        "wall_time_s": r.get("wall_time_s"), "images_per_s": _dig(r, ("train", "images_per_s")),
        "peak_memory_mb": r.get("peak_memory_mb"), "sweep": json.dumps(r.get("sweep") or {}, sort_keys=True),
    }


def write_report(
    name: str, results: list[dict[str, Any]], baselines: list[dict[str, Any]], out_dir: Path,
    invocation: dict[str, Any] | None = None, description: str | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html, results.csv, results.json and the PNGs into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=_order)
    groups = group_results(results)
    metrics = metric_names(results) or ["knn_top1", "linear_top1"]
    intro = [description] if description else []
    if invocation:
        env = invocation.get("environment", {})
        intro.append(
            f"Made by `{invocation.get('command', '?')}` on {env.get('device_name', '?')} "
            f"(cmp {env.get('cmp', '?')}, torch {env.get('torch', '?')}), {invocation.get('finished', '')}."
        )
    ok, failed = sum(len(g.ok) for g in groups), sum(len(g.failed) for g in groups)
    runs_dir = (invocation or {}).get("runs_dir", "RUNS_DIR")
    intro.append(f"{ok} cell(s) finished, {failed} failed. Regenerate with `cmp report {runs_dir}`.")

    sections = [Section("Methods", [method_table(groups, baselines, metrics),
                                    "kNN: weighted vote of the 200 nearest training features (cosine, T = 0.1) "
                                    "unless the recipe says otherwise; linear: logistic regression on frozen, "
                                    "standardised features. Both on the encoder's representation, test split."])]
    figure = batch_size_figure(groups, metrics, out_dir / "batch_size.png")
    if figure:
        sections.append(Section("Accuracy against batch size", [figure]))
    tables = [t for t in (loss_table(results, m) for m in metrics) if t]
    if tables:
        sections.append(Section("Losses and negative sources", tables))
    curves = curves_figure(groups, out_dir / "curves.png")
    if curves:
        sections.append(Section("Training curves", [curves]))
    failures = [r for g in groups for r in g.failed]
    if failures:
        sections.append(Section("Failed cells", [Table(["cell", "reason"], [[str(r.get("cell")), str(r.get("reason"))] for r in failures])]))

    title = f"cmp report: {name}"
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html",
             "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    paths["markdown"].write_text(render_markdown(title, intro, sections))
    paths["html"].write_text(render_html(title, intro, sections))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in results)
    summary = [
        {"group": g.label, "method": g.method, "settings": g.settings, "seeds": len(g.ok), "failed": len(g.failed),
         **{m: (lambda e: {"mean": e.mean, "ci95": e.half_width, "n": e.n})(g.metric(m)) for m in metrics if g.metric(m)}}
        for g in groups
    ]
    paths["json"].write_text(json.dumps(
        {"recipe": name, "invocation": invocation, "groups": summary, "cells": results, "baselines": baselines},
        indent=2, default=str,
    ))
    return paths
