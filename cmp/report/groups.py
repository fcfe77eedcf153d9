"""Grouping and ordering of results: cells that differ only by their seed form a group.

A group is summarised as mean ± 95% interval over its seeds; baselines are grouped by
label the same way. A group whose encoder was loaded from a weights file carries its
`source` (the file's name and the first 12 hex digits of its sha256) in its label, so
every table, figure and comparison names where those weights came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmp.api.results import BaselineResult, RunResult
from cmp.report.stats import Estimate, estimate

SEED_KEY = "train.seed"


@dataclass
class Group:
    """Cells of one method and one setting of the swept keys, over seeds."""

    method: str
    settings: dict[str, Any]
    ok: list[RunResult] = field(default_factory=list)
    failed: list[RunResult] = field(default_factory=list)
    source: str | None = None
    """Where its encoder's weights came from (`weights_source`), None when trained here."""

    @property
    def label(self) -> str:
        """`simclr (batch_size=64, loss=nt_xent)`: the method and its swept settings;
        `lightly_simclr [simclr.ckpt sha256:1a2b3c4d5e6f]` for weights loaded from a file."""
        name = f"{self.method} [{self.source}]" if self.source else self.method
        if not self.settings:
            return name
        return f"{name} ({', '.join(f'{short_key(k)}={format_value(v)}' for k, v in self.settings.items())})"

    def metric(self, name: str) -> Estimate | None:
        """The metric over the finished seeds, None when none has it."""
        values = [r.metrics[name] for r in self.ok if name in r.metrics]
        return estimate(values) if values else None

    def mean_of(self, value: Callable[[RunResult], float | int | None]) -> float | None:
        """Mean of `value(result)` over the finished seeds that have one."""
        numbers = [v for v in (value(r) for r in self.ok) if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers) if numbers else None


def short_key(key: str) -> str:
    """`loss.name` -> `loss`, `train.batch_size` -> `batch_size`, `loss.params.margin` -> `loss.margin`."""
    parts = [p for p in key.split(".") if p != "params"]
    if parts[0] in ("train", "data") and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "name" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def format_value(value: Any) -> str:
    """A swept value as written in a label: strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def result_order(result: RunResult) -> tuple[Any, ...]:
    """Sort key: method, then swept values, numbers numerically."""
    values = tuple(
        (k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, json.dumps(v))) for k, v in sorted(result.sweep.items())
    )
    return (result.method, values)


def weights_source(result: RunResult) -> str | None:
    """`simclr.ckpt sha256:1a2b3c4d5e6f`: the weights file(s) a cell's parts were loaded from;
    `simclr-{seed}.ckpt` for one file per seed, so a method's seeds stay one group."""
    files = result.config.get("weights") or {}
    shown = [Path(str(f["pattern"])).name if f.get("pattern")
             else f"{Path(str(f.get('path', '?'))).name} sha256:{str(f.get('sha256', ''))[:12]}"
             for f in files.values()]
    return ", ".join(shown) or None


def group_results(results: Iterable[RunResult]) -> list[Group]:
    """Group cells by method, weights file and swept values other than the seed, in first-seen order."""
    groups: dict[str, Group] = {}
    for r in results:
        settings = {k: v for k, v in r.sweep.items() if k != SEED_KEY}
        source = weights_source(r)
        key = json.dumps([r.method, settings, source], sort_keys=True)
        group = groups.setdefault(key, Group(r.method, settings, source=source))
        (group.ok if r.ok else group.failed).append(r)
    return list(groups.values())


def baseline_groups(baselines: Iterable[BaselineResult]) -> dict[str, list[BaselineResult]]:
    """Finished baselines by label (one entry per seed that asked for it)."""
    grouped: dict[str, list[BaselineResult]] = {}
    for b in baselines:
        if b.ok:
            grouped.setdefault(b.label, []).append(b)
    return grouped
