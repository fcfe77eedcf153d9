"""Comparison reports: a recipe's results -> report.md, a self-contained report.html, results.csv, results.json.

Cells that differ only by `train.seed` form a group, summarised as mean ± 95% interval
(`groups`, `stats`). The report holds the method table with the baselines, each metric
against batch size (SimCLR's figure 9) when batch sizes were swept, the loss table
(losses x negative sources, its table 2) when losses were swept, the training curves, the
failed cells, and then the sections plugins add through `cmp_report_sections`. Metric
columns, labels and plots come from the evaluators' `MetricInfo` (`metrics`). One document
model (`document`) is rendered twice (`markdown`, `html`), so the two never differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.document import Figure, Section, Table
from cmp.report.figures import batch_size_figure, curve_panels, curves_figure
from cmp.report.files import write_csv, write_json
from cmp.report.groups import Group, group_results, result_order
from cmp.report.html import render_html
from cmp.report.markdown import render_markdown
from cmp.report.metrics import ReportMetric, report_metrics
from cmp.report.tables import evaluation_protocol, failures_table, loss_table, method_table

__all__ = [
    "Figure", "Group", "ReportMetric", "Section", "Table", "curve_panels", "group_results", "plugin_sections",
    "report_metrics", "write_report",
]


def write_report(
    name: str, results: list[RunResult], baselines: list[BaselineResult], out_dir: Path,
    invocation: dict[str, Any] | None = None, description: str | None = None, hooks: Any | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html, results.csv, results.json and the PNGs into `out_dir`.

    `hooks` is the plugins' hook relay (`PluginManager.hook`); with it, the sections every
    `cmp_report_sections` implementation returns follow cmp's own.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=result_order)
    groups = group_results(results)
    metrics = report_metrics(results, baselines)

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

    protocol = evaluation_protocol(results)
    sections = [Section("Methods", [method_table(groups, baselines, metrics), *([protocol] if protocol else [])])]
    figure = batch_size_figure(groups, metrics, out_dir / "batch_size.png")
    if figure:
        sections.append(Section("Metrics against batch size", [figure]))
    tables = [t for t in (loss_table(results, m) for m in metrics) if t]
    if tables:
        sections.append(Section("Losses and negative sources", list(tables)))
    curves = curves_figure(groups, metrics, out_dir / "curves.png")
    if curves:
        sections.append(Section("Training curves", [curves]))
    failures = [r for g in groups for r in g.failed]
    if failures:
        sections.append(Section("Failed cells", [failures_table(failures)]))
    if hooks is not None:
        sections += plugin_sections(hooks, results, baselines, out_dir)

    title = f"cmp report: {name}"
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html",
             "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    paths["markdown"].write_text(render_markdown(title, intro, sections, out_dir))
    paths["html"].write_text(render_html(title, intro, sections))
    write_csv(results, metrics, paths["csv"])
    write_json(name, results, baselines, groups, metrics, invocation, paths["json"])
    return paths


def plugin_sections(hooks: Any, results: list[RunResult], baselines: list[BaselineResult], out_dir: Path) -> list[Section]:
    """Every plugin's `cmp_report_sections`, in pluggy's call order.

    A plugin that raises or returns something other than Sections does not cost the
    report: its failure is listed, naming the plugin, in a section of its own.
    """
    sections: list[Section] = []
    failed: list[list[str]] = []
    caller = hooks.cmp_report_sections
    for impl in reversed(caller.get_hookimpls()):
        try:
            returned = impl.function(**{name: {"results": results, "baselines": baselines, "out_dir": out_dir}[name]
                                        for name in impl.argnames})
            found = [returned] if isinstance(returned, Section) else list(returned or [])
            wrong = [type(s).__name__ for s in found if not isinstance(s, Section)]
            if wrong:
                raise TypeError(f"returned {wrong[0]}, not cmp.report.document.Section")
            sections += found
        except Exception as exc:  # a plugin's section must not cost the report
            failed.append([impl.plugin_name, f"{type(exc).__name__}: {exc}"])
    if failed:
        sections.append(Section("Plugin sections that failed", [Table(["plugin", "error"], failed)]))
    return sections
