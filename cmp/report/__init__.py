"""Comparison reports: a recipe's results -> report.md, a self-contained report.html, results.csv, results.json.

Cells that differ only by `train.seed` form a group, summarised as mean ± 95% interval
(`groups`, `stats`). The report holds the method table with the baselines, each metric
against batch size (SimCLR's figure 9) when batch sizes were swept, the loss table
(losses x negative sources, its table 2) when losses were swept, the training curves, the
failed cells, each method against the recipe's `reference` method (`reference`), and then the
sections plugins add through `cmp_report_sections`. Metric columns, labels and plots come
from the evaluators' `MetricInfo` (`metrics`). One document model (`document`) is rendered
twice (`markdown`, `html`), so the two never differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.claims import Claim, ClaimResult, check_claims, comparisons_table
from cmp.report.compute import accounted_metric, compute_table, time_panel
from cmp.report.document import Figure, Section, Table
from cmp.report.embedding import embedding_maps
from cmp.report.figure_data import BASELINES_CAPTION, curve_panels
from cmp.report.figures import batch_size_figure, curves_figure, embedding_figure, metric_curves_figure, panel_figure
from cmp.report.files import write_csv, write_json
from cmp.report.groups import Group, group_results, result_order
from cmp.report.html import render_html
from cmp.report.markdown import render_markdown
from cmp.report.metrics import ReportMetric, report_metrics
from cmp.report.paired import one_factor_comparisons
from cmp.report.ranking import paired_tests, ranking_line
from cmp.report.reference import reference_line, reference_section, with_reference_only
from cmp.report.tables import (
    baseline_standing,
    evaluation_protocol,
    failures_table,
    loss_table,
    method_table,
    settings_tables,
    time_split,
)

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
    invocation = invocation or {}
    intro = introduction(groups, invocation, description)
    sections = report_sections(results, baselines, groups, metrics, invocation, out_dir)
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


def introduction(groups: list[Group], invocation: dict[str, Any], description: str | None) -> list[str]:
    """The paragraphs above the sections: the recipe's description, the command and machine, the cell count."""
    overrides = invocation.get("overrides") or []
    intro = []
    if description:
        intro.append(f"*The recipe's description; this run changed it with {', '.join(f'`--set {o}`' for o in overrides)}:* "
                     f"{description}" if overrides else description)
    if "command" in invocation:
        env = invocation.get("environment", {})
        intro.append(
            f"Made by `{invocation.get('command', '?')}` on {machine(env)} "
            f"(cmp {env.get('cmp', '?')}, torch {env.get('torch', '?')}), {invocation.get('finished', '')}."
        )
    ok, failed = sum(len(g.ok) for g in groups), sum(len(g.failed) for g in groups)
    runs_dir = invocation.get("runs_dir", "RUNS_DIR")
    intro.append(f"{ok} cell(s) finished, {failed} failed. Regenerate with `cmp report {runs_dir}`.")
    return intro


def report_sections(results: list[RunResult], baselines: list[BaselineResult], groups: list[Group],
                    metrics: list[ReportMetric], invocation: dict[str, Any], out_dir: Path) -> list[Section]:
    """cmp's own sections, in order: the answer (summary), then its evidence; the figures are written to `out_dir`."""
    claims = check_claims([Claim.from_dict(c) for c in invocation.get("claims") or []], groups, metrics)
    standing, below = baseline_standing(groups, baselines, metrics)
    reference = invocation.get("reference")
    sections = [summary_section(groups, metrics, claims, below, bool(standing), reference)]
    protocol = evaluation_protocol(results)
    sections.append(Section("Methods", [method_table(groups, baselines, metrics), *([protocol] if protocol else [])]))
    if standing:
        sections.append(Section("Against the baselines", [standing]))
    if reference:
        sections.append(reference_section(groups, metrics, reference))
    figure = batch_size_figure(groups, [m for m in metrics if m.info.percent], out_dir / "batch_size.png",
                               baselines=baselines)
    if figure:
        sections.append(Section("Metrics against batch size", [figure]))
    tables = [t for t in (loss_table(results, m) for m in metrics if m.info.percent) if t]
    if tables:
        sections.append(Section("Losses and negative sources", list(tables)))
    curves = curves_section(results, baselines, groups, metrics, out_dir)
    if curves:
        sections.append(curves)
    compute = compute_section(results, baselines, groups, metrics, out_dir)
    if compute:
        sections.append(compute)
    if invocation.get("runs_dir") and (maps := embedding_maps(groups, Path(invocation["runs_dir"]))):
        sections.append(Section("Embedding maps", [embedding_figure(maps, out_dir / "embeddings.png")]))
    sections.append(Section("What was run", [*settings_tables(groups), time_split(results, baselines, invocation.get("wall_time_s"))]))
    failures = [r for g in groups for r in g.failed]
    if failures:
        sections.append(Section("Failed cells", [failures_table(failures)]))
    comparisons = comparisons_table(groups, metrics, reference)
    if claims or comparisons:
        sections.append(Section("Claims and paired comparisons", [
            *(claim_paragraphs(claims)), *([comparisons] if comparisons else []),
        ]))
    return sections


def curves_section(results: list[RunResult], baselines: list[BaselineResult], groups: list[Group],
                   metrics: list[ReportMetric], out_dir: Path) -> Section | None:
    """The training curves (percentage metrics, per loss) and the diagnostics' curves; None when neither is drawn."""
    subset = evaluation_subset(results)
    # curves evaluated on a subset are not comparable with baselines measured on every image
    accuracy = [m for m in metrics if m.info.percent]  # losses differ in scale, so these go per loss
    curves = curves_figure(groups, accuracy, out_dir / "curves.png", baselines=[] if subset else baselines)
    if curves and subset:
        curves.caption += (f" Evaluations during training, and so these curves, use a fixed subset of {subset:,} "
                           "training and test images; the tables' final values use every image.")
    diagnostics = metric_curves_figure(groups, [m for m in metrics if not m.info.percent], out_dir / "diagnostics.png")
    if diagnostics and subset:
        diagnostics.caption += f" On the fixed subset of {subset:,} images evaluated during training."
    if curves or diagnostics:
        return Section("Training curves", [f for f in (curves, diagnostics) if f])
    return None


def compute_section(results: list[RunResult], baselines: list[BaselineResult], groups: list[Group],
                    metrics: list[ReportMetric], out_dir: Path) -> Section | None:
    """What each method cost to get good enough (`compute`): the table, and accuracy against training time."""
    metric = accounted_metric(results, metrics)
    if metric is None:
        shown = [m for m in metrics if m.info.percent]
        if not shown or not any(g.ok for g in groups):
            return None
        return Section("Compute", [compute_table(groups, baselines, shown[0])])
    blocks: list[Any] = [compute_table(groups, baselines, metric)]
    panel = time_panel(groups, baselines, metric)
    if panel is not None:
        blocks.append(panel_figure(
            panel, out_dir / "accuracy_time.png", f"{metric.info.label} at each evaluation during training against the training loop's time to it (evaluation "
            "excluded), one line per run, mean over seeds; values on a subset of images are shifted so that the last "
            f"equals the final value on every image; {BASELINES_CAPTION}."))
    return Section("Compute", blocks)


def evaluation_subset(results: list[RunResult]) -> int | None:
    """The `train.eval_subset` of cells that evaluated during training on a subset, if any did."""
    for r in results:
        train = r.config.get("train") or {}
        if r.ok and train.get("eval_every") and train.get("eval_subset") and len(r.eval_history) > 1:
            if (r.train_images or 0) > train["eval_subset"] or (r.test_images or 0) > train["eval_subset"]:
                return int(train["eval_subset"])
    return None


def machine(env: dict[str, Any]) -> str:
    """`Intel(R) Xeon(R) Processor (2 threads)`, or the accelerator's name."""
    return str(env.get("device_name", "?"))


def summary_section(
    groups: list[Group], metrics: list[ReportMetric], claims: list[ClaimResult], below: list[str], baselines: bool,
    reference: str | None = None,
) -> Section:
    """The answer first: per percentage metric the best group where the Holm-corrected paired tests show one
    (else why none is named: `ranking`), each method against the `reference` method where there is one,
    methods below a baseline, the claims' verdicts."""
    blocks: list[Any] = []
    lines = []
    comparisons = with_reference_only(one_factor_comparisons(groups), reference)
    for m in (m for m in metrics if m.info.percent):
        line = ranking_line(groups, paired_tests(comparisons, m), m, reference)
        if line:
            lines.append(line)
        if reference and any(g.ok for g in groups) and (against := reference_line(groups, m, reference)) not in lines:
            lines.append(against)
    if below:
        lines += [f"- **Below a baseline:** {line}." for line in below]
    elif baselines and any(g.ok for g in groups):
        lines.append("- Every method is above every baseline it should beat (raw pixels, a random encoder), "
                     "on every percentage metric.")
    verdicts = {"supported": "reproduced", "contradicted": "reversed", "inconclusive": "not shown"}
    for c in claims:
        lines.append(f"- Claim {c.claim.text()} ({c.context}, {c.metric.info.label}): **{verdicts[c.verdict]}**.")
    if lines:
        blocks.append("\n".join(lines))
    return Section("Summary", blocks)


def claim_paragraphs(claims: list[ClaimResult]) -> list[str]:
    """One paragraph per claim and context, with its numbers."""
    return [c.sentence() for c in claims]


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
