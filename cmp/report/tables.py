"""The report's tables: methods against baselines, losses against negative sources, failures.

Metric columns are those of `cmp.report.metrics.report_metrics`, never a fixed list.
"""

from __future__ import annotations

import json
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.document import Table
from cmp.report.groups import Group, baseline_groups
from cmp.report.metrics import ReportMetric
from cmp.report.stats import estimate


def method_table(groups: list[Group], baselines: list[BaselineResult], metrics: list[ReportMetric]) -> Table:
    """One row per finished group, then one per baseline: each metric over seeds, and times (the other
    costs are in `cmp.report.compute`'s table)."""
    header = ["run", "seeds", *(m.label for m in metrics), "train time (s)", "cell time (s)"]
    rows = []
    for g in groups:
        if not g.ok:
            continue
        rows.append([
            g.label, str(len(g.ok)), *(m.format(g.metric(m.name)) for m in metrics),
            _number(g.mean_of(lambda r: r.train.train_time_s if r.train else None), 1),
            _number(g.mean_of(lambda r: r.wall_time_s), 1),
        ])
    for label, items in baseline_groups(baselines).items():
        cells = []
        for m in metrics:
            values = [b.metrics[m.name] for b in items if m.name in b.metrics]
            cells.append(m.format(estimate(values) if values else None))
        rows.append([f"baseline: {label}", str(len(items)), *cells, "-",
                     _number(sum(b.wall_time_s for b in items) / len(items), 1)])
    return Table(header, rows, "Mean ± 95% interval (Student t) over seeds; one value where a single seed ran. "
                 "A baseline's seeds are those of the cells that asked for it. Train time: the training loop alone; "
                 "cell time: the whole cell (data, building, training, evaluation), as the terminal's wall time. "
                 "Images/s and peak memory are under Compute.")


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def loss_table(results: list[RunResult], metric: ReportMetric) -> Table | None:
    """Losses x (method, negative source) for one metric (SimCLR's table 2), when more than one loss ran."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results:
        parts = r.config.get("parts") or {}
        if not r.ok or metric.name not in r.metrics or not parts.get("loss"):
            continue
        negatives = (parts.get("negative_source") or {}).get("name", "none")
        cells.setdefault((loss_label(parts["loss"]), f"{r.method} ({negatives})"), []).append(r.metrics[metric.name])
    losses = sorted({loss for loss, _ in cells})
    if len(losses) < 2:
        return None
    columns = sorted({column for _, column in cells})
    rows = [
        [loss, *(metric.format(estimate(cells[(loss, c)])) if (loss, c) in cells else "-" for c in columns)]
        for loss in losses
    ]
    return Table(["loss", *columns], rows, f"{metric.label}, mean ± 95% interval over seeds.")


def loss_label(loss: dict[str, Any]) -> str:
    """`nt_xent (t=0.5)`, `margin_triplet (semi-hard, m=0.5)`: a loss and the parameters that tell variants apart."""
    params = loss.get("params") or {}
    extras = []
    if params.get("semi_hard"):
        extras.append("semi-hard")
    if "temperature" in params:
        extras.append(f"t={params['temperature']}")
    if "margin" in params:
        extras.append(f"m={params['margin']}")
    return f"{loss['name']} ({', '.join(extras)})" if extras else str(loss["name"])


def evaluation_protocol(results: list[RunResult]) -> str | None:
    """A sentence naming each evaluator of the cells' resolved `eval` configuration and its parameters.

    Built from the configuration, not from known evaluator names, so a plugin's evaluator
    is described like cmp's own; a variant used by several cells is named once.
    """
    described: list[str] = []
    for r in results:
        for key, choice in (r.config.get("eval") or {}).items():
            choice = choice or {}
            name = str(choice.get("name", key))
            params = ", ".join(f"{k}={_param(v)}" for k, v in (choice.get("params") or {}).items())
            text = f"`{key}`" + (f" ({name})" if name != key else "") + (f": {params}" if params else "")
            if text not in described:
                described.append(text)
    if not described:
        return None
    return ("Evaluators, fitted on the frozen encoder's features of the training split and scored on the "
            f"test split: {'; '.join(described)}.")


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def failures_table(failed: list[RunResult]) -> Table:
    """Each failed cell and why it failed."""
    return Table(["cell", "reason"], [[r.cell, r.reason or "-"] for r in failed])


def _batch(train: dict[str, Any]) -> str:
    """`4096 (1024 a chunk)` when gradient caching split the batch, else the batch alone."""
    batch, chunk = train.get("batch_size"), train.get("micro_batch")
    if batch is None:
        return "-"
    return f"{batch} ({chunk} a chunk)" if chunk and chunk < batch else str(batch)


SETTINGS_HEADER = ["run", "epochs", "steps", "images seen", "batch", "effective lr", "precision", "device", "encoder",
                   "augmentation", "head / predictor", "target", "negatives", "loss / objective", "optimizer",
                   "training images"]


def settings_tables(groups: list[Group]) -> list[Table]:
    """What each group ran: budget, batch, effective learning rate, precision, device, parts.

    Read from the results themselves (the resolved configuration and what training
    measured), so a value changed with `--set` shows as run. With several groups, a setting
    every group shares is said once, in a table of its own (one row per setting), and the
    table of runs keeps only the settings in which they differ, so it fits the page.
    """
    rows = [_settings_row(g) for g in groups if g.ok]
    caption = ("As run: the resolved configuration of the first seed (seeds differ only in their seed) and what "
               "its training measured; effective lr is the optimizer's base learning rate after batch-size scaling; "
               "an encoder's input, where given, is how it made its input from the data (a grey data set repeated "
               "into 3 channels, resized, normalised as its weights were trained). Each run's config.yaml holds "
               "every resolved parameter.")
    if len(rows) < 2:
        return [Table(SETTINGS_HEADER, rows, caption)]
    shared = [i for i in range(1, len(SETTINGS_HEADER)) if len({row[i] for row in rows}) == 1]
    varying = [0, *(i for i in range(1, len(SETTINGS_HEADER)) if i not in shared)]
    shared_table = Table(["setting (every run)", "value"], [[SETTINGS_HEADER[i], rows[0][i]] for i in shared])
    if len(varying) == 1:  # the runs differ in none of these settings
        return [Table(shared_table.header, shared_table.rows, caption)]
    tables = [Table([SETTINGS_HEADER[i] for i in varying], [[row[i] for i in varying] for row in rows],
                    caption + (" Settings every run shares are in the table below." if shared else ""))]
    return tables + ([shared_table] if shared else [])


def _settings_row(g: Group) -> list[str]:
    r = g.ok[0]
    train = r.config.get("train") or {}
    parts = r.config.get("parts") or {}
    stats = r.train
    return [
        g.label,
        str(stats.epochs if stats else train.get("epochs", "-")),
        _number(stats.steps if stats else None, 0),
        _number(stats.images_seen if stats else None, 0),
        _batch(train),
        "-" if not stats or stats.effective_lr is None else f"{stats.effective_lr:.4g}",
        str(train.get("precision", "-")), r.device,
        _part(parts.get("encoder")) + (f"; input: {r.encoder_input}" if r.encoder_input else ""),
        _part(parts.get("augmentation")),
        f"{_name(parts.get('projection_head'))} / {_name(parts.get('predictor'))}",
        _name(parts.get("target")), _name(parts.get("negative_source")),
        _name(parts.get("objective")) if parts.get("objective") else _name(parts.get("loss")),
        _name(parts.get("optimizer")),
        _number(r.train_images, 0),
    ]


PART_TEXT = 40
"""Characters of a part's parameters shown in the settings table (config.yaml has them all)."""


def _name(choice: dict[str, Any] | None) -> str:
    """A part's name, `-` where the method has none (config.yaml and the tables above hold its parameters)."""
    return str(choice.get("name")) if choice else "-"


def _part(choice: dict[str, Any] | None) -> str:
    """`convnet (widths=[32, 64, 128])`: a part's name and its set parameters, cut to `PART_TEXT`."""
    if not choice:
        return "-"
    params = ", ".join(f"{k}={_param(v)}" for k, v in (choice.get("params") or {}).items() if v is not None)
    if len(params) > PART_TEXT:
        params = params[:PART_TEXT].rsplit(", ", 1)[0] + ", …"
    return f"{choice.get('name')} ({params})" if params else str(choice.get("name"))


def time_split(results: list[RunResult], baselines: list[BaselineResult], wall_time_s: float | None) -> Table:
    """Where the wall time went: training loops, evaluations, the rest of the cells, baselines.

    `wall_time_s` is the last `cmp run`'s own time: the total when it computed every cell
    and baseline; when some came from its cache (computed by an earlier run, so their time
    is not in it) the total is the sum of the parts, and no "rest of the run" row is shown.
    """
    fresh = [r for r in results if r.ok and r.train]
    train = sum(r.train.train_time_s for r in fresh if r.train)
    evaluation = sum(r.eval_time_s or 0.0 for r in fresh)
    cells = sum(r.wall_time_s for r in fresh)
    base = sum(b.wall_time_s for b in baselines if b.ok)
    note = ""
    if wall_time_s and wall_time_s < cells + base:
        note = (f" Some of them were computed by an earlier `cmp run` (the last one took "
                f"{_minutes(wall_time_s)} min), so the total is their sum.")
        wall_time_s = None
    total = wall_time_s if wall_time_s else cells + base
    rows = [
        ["training (the loops)", _minutes(train), _share(train, total)],
        ["evaluation (during and after training)", _minutes(evaluation), _share(evaluation, total)],
        ["rest of the cells (data, building, checkpoints)", _minutes(max(0.0, cells - train - evaluation)),
         _share(max(0.0, cells - train - evaluation), total)],
        ["baselines", _minutes(base), _share(base, total)],
    ]
    if wall_time_s:
        rows.append(["rest of the run (loading, report)", _minutes(max(0.0, total - cells - base)),
                     _share(max(0.0, total - cells - base), total)])
    rows.append(["total", _minutes(total), "100%"])
    training_share = train / cells if cells else 0.0
    return Table(["part", "time (min)", "share"], rows,
                 f"Sums over the cells and baselines as they were computed (a cached one counts the time it took when "
                 f"it ran).{note} Training is {100 * training_share:.0f}% of the cells' own wall time.")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def _share(part: float, total: float) -> str:
    return f"{100 * part / total:.0f}%" if total > 0 else "-"


def baseline_standing(groups: list[Group], baselines: list[BaselineResult], metrics: list[ReportMetric]) -> tuple[Table | None, list[str]]:
    """Each group's margin over each baseline (mean − mean) per percentage metric, and the groups below one.

    Returns the table and, per group below some floor baseline (raw pixels, a random
    encoder; not a ceiling such as a supervised encoder), one line saying where.
    """
    shown = [m for m in metrics if m.info.percent]
    base = {label: items for label, items in baseline_groups(baselines).items()}
    columns = [(m, label) for m in shown for label, items in base.items() if any(m.name in b.metrics for b in items)]
    if not columns:
        return None, []
    floors = {label for label, items in base.items() if all(b.reference == "floor" for b in items)}
    rows, below = [], []
    for g in groups:
        if not g.ok:
            continue
        cells, mine_below = [], []
        for m, label in columns:
            mine = g.metric(m.name)
            values = [b.metrics[m.name] for b in base[label] if m.name in b.metrics]
            if mine is None:
                cells.append("-")
                continue
            reference = sum(values) / len(values)
            margin = m.scale * (mine.mean - reference)
            worse = margin < 0 if m.info.higher_is_better else margin > 0
            flagged = worse and label in floors
            cells.append(f"{margin:+.{m.digits}f}" + (" ✗" if flagged else ""))
            if flagged:
                mine_below.append(f"{label} on {m.info.label} ({m.format_value(mine.mean)} vs {m.format_value(reference)})")
        rows.append([g.label, *cells])
        if mine_below:
            below.append(f"{g.label}: below {'; '.join(mine_below)}")
    header = ["run", *(f"{m.info.label} − {label}" for m, label in columns)]
    ceilings = sorted(set(base) - floors)
    caption = "Mean over seeds minus the baseline's mean, in points; ✗ marks a method below a baseline it should beat."
    if ceilings:
        caption += f" {', '.join(ceilings)}: an upper reference, not flagged."
    return Table(header, rows, caption), below
