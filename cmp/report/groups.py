"""Grouping and ordering of results: cells that differ only by their seed form a group.

A group is summarised as mean ± 95% interval over its seeds; baselines are grouped by
label the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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

    @property
    def label(self) -> str:
        """`simclr (batch_size=64, loss=nt_xent)`: the method and its swept settings."""
        if not self.settings:
            return self.method
        return f"{self.method} ({', '.join(f'{short_key(k)}={format_value(v)}' for k, v in self.settings.items())})"

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


def group_results(results: Iterable[RunResult]) -> list[Group]:
    """Group cells by method and swept values other than the seed, in first-seen order."""
    groups: dict[str, Group] = {}
    for r in results:
        settings = {k: v for k, v in r.sweep.items() if k != SEED_KEY}
        key = json.dumps([r.method, settings], sort_keys=True)
        group = groups.setdefault(key, Group(r.method, settings))
        (group.ok if r.ok else group.failed).append(r)
    return list(groups.values())


def baseline_groups(baselines: Iterable[BaselineResult]) -> dict[str, list[BaselineResult]]:
    """Finished baselines by label (one entry per seed that asked for it)."""
    grouped: dict[str, list[BaselineResult]] = {}
    for b in baselines:
        if b.ok:
            grouped.setdefault(b.label, []).append(b)
    return grouped
