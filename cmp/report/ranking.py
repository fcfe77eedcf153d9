"""Whether a report may name a best run on a metric: no winner from noise.

The run with the highest mean (lowest, for a metric where lower is better) is named best
only when the paired comparisons over seeds show it ahead of every other run, after Holm's
correction for all the paired tests the report makes on that metric (`paired_tests`: one
per row of its comparisons table with a p-value). Otherwise the summary says why not: the
leaders are not distinguishable, the order rests on one seed (quoting the seed-to-seed
spread measured by the report's runs with several seeds, where there are any), or a run
differs from the leader in more than one setting and so was not compared with it in pairs.
With a reference method (`cmp.report.reference`) the report compares methods only with it,
and the summary says so where that leaves the leader unpaired with another method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cmp.report.groups import Group
from cmp.report.metrics import ReportMetric
from cmp.report.paired import (
    METHOD_FACTOR,
    Comparison,
    PairedDifference,
    holm_adjusted,
    one_factor_comparisons,
    paired_difference,
    seed_values,
)

ALPHA = 0.05
"""Family-wise error rate of the Holm-corrected paired tests."""
LISTED = 3
"""Runs named in a sentence before "and N more"."""


@dataclass(frozen=True)
class PairedTest:
    """One comparison on one metric: A − B over shared seeds, and its Holm-adjusted p (None without a p-value)."""

    comparison: Comparison
    difference: PairedDifference | None
    holm_p: float | None


def paired_tests(comparisons: Sequence[Comparison], metric: ReportMetric) -> list[PairedTest]:
    """Every comparison's paired difference on `metric`, its p-value Holm-adjusted over those that have one."""
    differences = [paired_difference(seed_values(c.a, metric.name), seed_values(c.b, metric.name)) for c in comparisons]
    p_values = {i: d.p_value for i, d in enumerate(differences) if d is not None and d.p_value is not None}
    adjusted = dict(zip(p_values, holm_adjusted(list(p_values.values()))))
    return [PairedTest(c, d, adjusted.get(i)) for i, (c, d) in enumerate(zip(comparisons, differences))]


@dataclass(frozen=True)
class Rival:
    """Another run as seen from the leader: leader − rival over shared seeds, and the test's Holm-adjusted p."""

    group: Group
    difference: PairedDifference | None
    holm_p: float | None
    paired: bool


def ranking_line(groups: Sequence[Group], tests: Sequence[PairedTest], metric: ReportMetric,
                 reference: str | None = None) -> str | None:
    """The summary's line for `metric`: the best run where the paired tests show one, else why none is named.

    `reference`: the method the report compares the others with (`tests` holds only those method
    comparisons); a leader that was thus not paired with another method is said to be so."""
    scored = [(e, g) for g in groups if g.ok and (e := g.metric(metric.name)) is not None]
    if not scored:
        return None
    sign = 1.0 if metric.info.higher_is_better else -1.0
    leader_estimate, leader = max(scored, key=lambda s: sign * s[0].mean)
    head = f"{leader.label}, {metric.format(leader_estimate)}"
    if len(scored) == 1:
        return f"- {metric.info.label}: {head} (the only run; nothing to rank)."
    means = {id(g): e.mean for e, g in scored}
    rivals = sorted((_rival(leader, g, tests) for _, g in scored if g is not leader),
                    key=lambda r: sign * (leader_estimate.mean - means[id(r.group)]))  # closest first
    family = sum(t.holm_p is not None for t in tests)
    holm = (f"Holm's correction for the {family} paired test{'s' if family != 1 else ''} this report makes on "
            f"{metric.info.label}")
    beaten = [r for r in rivals if _beaten(r, sign)]
    if len(beaten) == len(rivals):
        closest = beaten[0]
        others = "the other run" if len(rivals) == 1 else f"each of the other {len(rivals)} runs"
        return (f"- Best on {metric.info.label}: {head}; ahead of {others} in paired "
                f"comparisons over seeds, with {holm} (every adjusted p < {ALPHA:g}; closest: {closest.group.label}, "
                f"{_gap(closest, metric)}, {_holm(closest.holm_p)}).")
    left = [r for r in rivals if r not in beaten]
    skipped = [r for r in left if reference is not None and not r.paired and _differ_in_method_only(leader, r.group)]
    if skipped:
        others = _why_not([r for r in left if r not in skipped], groups, metric, holm)
        return (f"- {metric.info.label}: no best run named: only comparisons with {reference} were made (see Against "
                f"{reference}), and the highest mean, {head}, was not compared in pairs with {_names(skipped)}"
                + (f"; it {others}" if others else "") + ".")
    return f"- {metric.info.label}: no best run named. The highest mean, {head}, " + _why_not(left, groups, metric, holm) + "."


def _differ_in_method_only(a: Group, b: Group) -> bool:
    """Whether `a` and `b` form a method comparison: the same settings but the method."""
    return any(c.factor == METHOD_FACTOR for c in one_factor_comparisons([a, b]))


def _rival(leader: Group, other: Group, tests: Sequence[PairedTest]) -> Rival:
    """`other` against `leader`: the paired test between them (oriented leader − other), if the report made one."""
    for t in tests:
        if {id(t.comparison.a), id(t.comparison.b)} == {id(leader), id(other)}:
            d = t.difference
            if d is not None and t.comparison.a is not leader:
                d = PairedDifference(-d.mean, d.half_width, d.p_value, d.seeds)
            return Rival(other, d, t.holm_p, True)
    return Rival(other, None, None, False)


def _beaten(rival: Rival, sign: float) -> bool:
    d = rival.difference
    return d is not None and rival.holm_p is not None and rival.holm_p < ALPHA and sign * d.mean > 0


def _why_not(rivals: list[Rival], groups: Sequence[Group], metric: ReportMetric, holm: str) -> str:
    """The reasons no best run is named, each naming the runs it concerns."""
    tested = [r for r in rivals if r.paired and r.holm_p is not None]
    one_seed = [r for r in rivals if r.paired and r.holm_p is None and r.difference is not None]
    unpaired = [r for r in rivals if not r.paired or r.difference is None]
    reasons = []
    if tested:
        closest = tested[0]
        reasons.append(f"is not distinguishable from {_names(tested)} in paired comparisons over seeds ({holm}, "
                       f"α = {ALPHA:g}; closest, {closest.group.label}: {_gap(closest, metric)}, {_holm(closest.holm_p)})")
    if one_seed:
        reasons.append(f"is ahead of {_names(one_seed)} on one seed only ({one_seed[0].group.label}: "
                       f"{_gap(one_seed[0], metric)}), so that order is not established; " + _spread_sentence(groups, metric))
    if unpaired:
        reasons.append(f"was not compared in pairs with {_names(unpaired)} (differing from it in more than one "
                       "setting, or sharing no seed)")
    return "; it ".join(reasons)


def _spread_sentence(groups: Sequence[Group], metric: ReportMetric) -> str:
    """The seed-to-seed standard deviation this report measured, or that it measured none."""
    spread = seed_spread(groups, metric.name)
    if spread is None:
        return "no run in this report has several seeds to measure the seed-to-seed spread, and one seed cannot rank runs"
    sd, runs = spread
    unit = " points" if metric.info.percent else ""
    return (f"the seed-to-seed standard deviation of {metric.info.label} measured in this report is "
            f"{metric.scale * sd:.{metric.digits}f}{unit} (pooled over {runs} run{'s' if runs != 1 else ''} with several seeds)")


def seed_spread(groups: Sequence[Group], metric: str) -> tuple[float, int] | None:
    """The pooled standard deviation over seeds, sqrt(Σ (n_i − 1) s_i² / Σ (n_i − 1)), of the groups with
    several seeds of `metric`, and how many groups that is; None when no group has two seeds."""
    squares, freedom, runs = 0.0, 0, 0
    for g in groups:
        values = [r.metrics[metric] for r in g.ok if metric in r.metrics]
        if len(values) < 2:
            continue
        mean = sum(values) / len(values)
        squares += sum((v - mean) ** 2 for v in values)
        freedom += len(values) - 1
        runs += 1
    return (math.sqrt(squares / freedom), runs) if freedom else None


def _gap(rival: Rival, metric: ReportMetric) -> str:
    """`+0.25 points over 1 seed`: leader − rival, as the metric is shown."""
    d = rival.difference
    if d is None:
        return "no shared seed"
    unit = " points" if metric.info.percent else ""
    return f"{metric.scale * d.mean:+.{metric.digits}f}{unit} over {d.n} seed{'s' if d.n != 1 else ''}"


def _holm(p: float | None) -> str:
    """`Holm p = 0.036`, `Holm p < 0.001`."""
    return "no p-value" if p is None else ("Holm p < 0.001" if p < 0.001 else f"Holm p = {p:.2g}")


def _names(rivals: list[Rival]) -> str:
    names = [r.group.label for r in rivals]
    if len(names) > LISTED:
        return ", ".join(names[:LISTED]) + f" and {len(names) - LISTED} more"
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


__all__ = ["ALPHA", "PairedTest", "paired_tests", "ranking_line", "seed_spread"]
