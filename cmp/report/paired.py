"""Paired comparisons: two groups that differ in one factor and share seeds, compared seed by seed.

Cells of a sweep that differ only in one swept value (the loss, the batch size) or in the
method run with the same seeds, so the seed's share of the noise (initialisation, data
order, augmentation draws) cancels in the per-seed difference. A `PairedDifference` is the
mean of those differences, its 95% Student-t interval and the two-sided paired t-test's
p-value (scipy's `ttest_rel`); `verdict` reads the interval: "A > B" is supported when it
lies above 0, contradicted when it lies below, inconclusive when it holds 0.

A part's parameters belong to the part: `loss.params.temperature` set beside `loss.name`
(each loss at its own temperature, as the SimCLR paper's table 2 tunes them) is one factor,
`loss.name`, whose values are labelled with those parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy import stats as scipy_stats

from cmp.report.groups import SEED_KEY, Group, format_value, short_key
from cmp.report.stats import estimate

METHOD_FACTOR = "method"
"""The factor name of a comparison between two methods at the same settings."""

Verdict = Literal["supported", "contradicted", "inconclusive"]


@dataclass(frozen=True)
class PairedDifference:
    """A - B over the seeds both have: mean, 95% half-width (None for one seed), p-value, seeds."""

    mean: float
    half_width: float | None
    p_value: float | None
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.seeds)

    def verdict(self) -> Verdict:
        """Whether the interval says A > B (supported), A < B (contradicted), or neither."""
        if self.half_width is None:
            return "inconclusive"
        if self.mean - self.half_width > 0:
            return "supported"
        if self.mean + self.half_width < 0:
            return "contradicted"
        return "inconclusive"

    def format(self, scale: float, digits: int = 2) -> str:
        """`+1.23 ± 0.45 (p = 0.012)`, scaled like the metric (e.g. to percentage points)."""
        text = f"{self.mean * scale:+.{digits}f}"
        if self.half_width is not None:
            text += f" ± {self.half_width * scale:.{digits}f}"
        if self.p_value is not None:
            text += f" ({format_p(self.p_value)})"
        return text


def format_p(p: float) -> str:
    """`p = 0.012` (two significant digits), `p < 0.001` below that."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def paired_difference(a: dict[int, float], b: dict[int, float]) -> PairedDifference | None:
    """A - B over their common seeds (None when they share none).

    Interval: mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n); p: two-sided paired t-test.
    Identical differences (sd 0) give a zero-width interval and p = 0 (or 1 when all are 0).
    """
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    summary = estimate(diffs)
    p: float | None = None
    if len(diffs) > 1:
        if all(d == diffs[0] for d in diffs):
            p = 1.0 if diffs[0] == 0 else 0.0
        else:
            p = float(scipy_stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
            p = None if math.isnan(p) else p
    return PairedDifference(summary.mean, summary.half_width, p, seeds)


def seed_values(group: Group, metric: str) -> dict[int, float]:
    """The metric of each finished seed of `group`."""
    values: dict[int, float] = {}
    for r in group.ok:
        seed = r.sweep.get(SEED_KEY, (r.config.get("train") or {}).get("seed"))
        if metric in r.metrics and isinstance(seed, int):
            values[seed] = r.metrics[metric]
    return values


@dataclass(frozen=True)
class Comparison:
    """Two groups that differ in exactly one factor: `a` and `b` its values, `context` the rest.

    `a_params`/`b_params` are the factor's companion settings (a part's swept parameters) of
    each side, shown in its label but not part of the value a claim names.
    """

    factor: str
    a: Group
    b: Group
    a_value: Any
    b_value: Any
    context: dict[str, Any]
    a_params: dict[str, Any] = field(default_factory=dict)
    b_params: dict[str, Any] = field(default_factory=dict)

    def context_label(self) -> str:
        parts = [f"{short_key(k)}={format_value(v)}" for k, v in self.context.items() if k != METHOD_FACTOR]
        if self.factor != METHOD_FACTOR:
            method = str(self.context[METHOD_FACTOR])
            parts.insert(0, f"{method} [{self.a.source}]" if self.a.source and self.a.source == self.b.source else method)
        return ", ".join(parts) if parts else "-"

    def a_label(self) -> str:
        return _with_source(_with_params(self.a_value, self.a_params), self.a, self.factor)

    def b_label(self) -> str:
        return _with_source(_with_params(self.b_value, self.b_params), self.b, self.factor)


def _with_source(label: str, group: Group, factor: str) -> str:
    """A method's label with where its weights came from, when they came from a file."""
    return f"{label} [{group.source}]" if factor == METHOD_FACTOR and group.source else label


def _with_params(value: Any, params: dict[str, Any]) -> str:
    """`nt_logistic (temperature=0.5)`."""
    if not params:
        return format_value(value)
    inner = ", ".join(f"{key.rsplit('.', 1)[-1]}={format_value(v)}" for key, v in sorted(params.items()))
    return f"{format_value(value)} ({inner})"


def owner(key: str) -> str | None:
    """The factor a setting belongs to: `loss.params.temperature` -> `loss.name`; None for a factor of its own."""
    part, sep, rest = key.partition(".params.")
    return f"{part}.name" if sep and rest else None


def _settings(group: Group) -> dict[str, Any]:
    return {METHOD_FACTOR: group.method, **{k: v for k, v in group.settings.items() if k != SEED_KEY}}


def value_key(value: Any) -> str:
    """A swept value as a comparable string: mappings equal whatever their key order."""
    return json.dumps(value, sort_keys=True)


def _same(x: Any, y: Any) -> bool:
    return value_key(x) == value_key(y)


def one_factor_comparisons(groups: Sequence[Group]) -> list[Comparison]:
    """Every pair of finished groups whose settings (method included) differ in one factor only.

    A factor that is absent from one group's settings (a second sweep grid) is a difference
    too, so cells at a fixed step count are never paired with cells at a fixed epoch count.
    A part's parameters count with its name when the name differs (see the module docstring).
    """
    found: list[Comparison] = []
    finished = [g for g in groups if g.ok]
    for i, a in enumerate(finished):
        for b in finished[i + 1:]:
            sa, sb = _settings(a), _settings(b)
            differing = {k for k in set(sa) | set(sb) if k not in sa or k not in sb or not _same(sa[k], sb[k])}
            factors = {owner(k) if owner(k) in differing else k for k in differing}
            if len(factors) != 1:
                continue
            (factor,) = factors
            if factor not in sa or factor not in sb:
                continue
            companions = {k for k in set(sa) | set(sb) if owner(k) == factor} if factor != METHOD_FACTOR else set()
            context = {k: v for k, v in sa.items() if k != factor and k not in companions}
            found.append(Comparison(factor, a, b, sa[factor], sb[factor], context,
                                    {k: sa[k] for k in companions if k in sa}, {k: sb[k] for k in companions if k in sb}))
    return found
