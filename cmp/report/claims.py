"""Claims a report tests: an ordering of one factor's values, checked with paired differences.

A recipe states what its ablation should show (`claims:`), e.g. the SimCLR paper's table 2
ordering `loss.name: nt_xent > nt_logistic > margin_triplet`. In every context (the other
settings: the method, the budget) the claim is checked pair by adjacent pair with
`paired_difference`; it is reproduced when every pair's 95% interval lies above 0,
contradicted when some pair's lies below, and not shown otherwise. The automatic paired
comparisons (every two groups differing in one factor) are tabled beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cmp.report.document import Table
from cmp.report.groups import Group, format_value, short_key
from cmp.report.metrics import ReportMetric
from cmp.report.paired import (
    Comparison,
    PairedDifference,
    Verdict,
    format_p,
    one_factor_comparisons,
    paired_difference,
    seed_values,
    value_key,
)
from cmp.report.ranking import PairedTest, paired_tests
from cmp.report.reference import with_reference_only


@dataclass(frozen=True)
class Claim:
    """`factor`'s values in `order`, best first, on `metrics` (None: every percentage metric)."""

    factor: str
    order: tuple[Any, ...]
    metrics: tuple[str, ...] | None = None
    source: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Claim:
        metrics = raw.get("metrics")
        return cls(str(raw["factor"]), tuple(raw["order"]), tuple(metrics) if metrics else None, raw.get("source"))

    def text(self) -> str:
        return " > ".join(format_value(v) for v in self.order)


@dataclass(frozen=True)
class StepResult:
    """One adjacent pair of a claim in one context."""

    better: Any
    worse: Any
    difference: PairedDifference | None
    better_label: str | None = None
    worse_label: str | None = None

    def labels(self) -> tuple[str, str]:
        """The two values as the sentence names them, parameters included (`nt_logistic (temperature=0.5)`)."""
        return self.better_label or format_value(self.better), self.worse_label or format_value(self.worse)


@dataclass(frozen=True)
class ClaimResult:
    """A claim on one metric in one context: each adjacent pair and the overall verdict."""

    claim: Claim
    metric: ReportMetric
    context: str
    steps: tuple[StepResult, ...]

    @property
    def verdict(self) -> Verdict:
        verdicts = [s.difference.verdict() if s.difference else "inconclusive" for s in self.steps]
        if "contradicted" in verdicts:
            return "contradicted"
        return "supported" if verdicts and all(v == "supported" for v in verdicts) else "inconclusive"

    def sentence(self) -> str:
        """`loss: nt_xent > nt_logistic (simclr), linear top-1: reproduced — nt_xent − nt_logistic +1.20 ± 0.40 points over 3 seeds (p = 0.01)`."""
        answer = {"supported": "yes", "contradicted": "no (reversed)", "inconclusive": "not shown (an interval holds 0)"}
        step_word = {"supported": "holds", "contradicted": "reversed", "inconclusive": "interval holds 0"}
        pieces = []
        for s in self.steps:
            better, worse = s.labels()
            if s.difference is None:
                pieces.append(f"{better} − {worse}: no shared seeds")
                continue
            d, unit = s.difference, " points" if self.metric.info.percent else ""
            mean = f"{d.mean * self.metric.scale:+.{self.metric.digits}f}"
            spread = "" if d.half_width is None else f" ± {d.half_width * self.metric.scale:.{self.metric.digits}f}"
            p = "" if d.p_value is None else f", {format_p(d.p_value)}"
            pieces.append(f"{better} − {worse} {mean}{spread}{unit} "
                          f"over {d.n} seeds{p} ({step_word[d.verdict()]})")
        source = f" ({self.claim.source})" if self.claim.source else ""
        return (f"**{short_key(self.claim.factor)}: {self.claim.text()}**{source} — {self.context}, {self.metric.info.label}: "
                f"**{answer[self.verdict]}**; " + "; ".join(pieces) + ".")


def check_claims(claims: Sequence[Claim], groups: Sequence[Group], metrics: Sequence[ReportMetric]) -> list[ClaimResult]:
    """Every claim on each of its metrics in every context where its factor's values ran."""
    comparisons = one_factor_comparisons(groups)
    results: list[ClaimResult] = []
    for claim in claims:
        chosen = [m for m in metrics if (m.name in claim.metrics if claim.metrics else m.info.percent)]
        by_context: dict[str, dict[tuple[str, str], Comparison]] = {}
        for c in comparisons:
            if c.factor == claim.factor:
                by_context.setdefault(c.context_label(), {})[(value_key(c.a_value), value_key(c.b_value))] = c
        for context, pairs in by_context.items():
            for metric in chosen:
                steps = []
                for better, worse in zip(claim.order, claim.order[1:]):
                    forward, backward = pairs.get((value_key(better), value_key(worse))), pairs.get((value_key(worse), value_key(better)))
                    if forward is not None:
                        diff = paired_difference(seed_values(forward.a, metric.name), seed_values(forward.b, metric.name))
                        labels = forward.a_label(), forward.b_label()
                    elif backward is not None:
                        diff = paired_difference(seed_values(backward.b, metric.name), seed_values(backward.a, metric.name))
                        labels = backward.b_label(), backward.a_label()
                    else:
                        continue
                    steps.append(StepResult(better, worse, diff, *labels))
                if steps:
                    results.append(ClaimResult(claim, metric, context, tuple(steps)))
    return results


def comparisons_table(groups: Sequence[Group], metrics: Sequence[ReportMetric], reference: str | None = None) -> Table | None:
    """Every one-factor comparison: A − B per percentage metric, paired over shared seeds, with Holm's p;
    with a `reference` method, of the comparisons between methods only those with it."""
    shown = [m for m in metrics if m.info.percent]
    comparisons = with_reference_only(one_factor_comparisons(groups), reference)
    tests = [paired_tests(comparisons, m) for m in shown]
    rows = []
    for i, c in enumerate(comparisons):
        cells = [_test_cell(per_metric[i], m) for m, per_metric in zip(shown, tests)]
        if any(cell != "-" for cell in cells):
            rows.append([short_key(c.factor), f"{c.a_label()} − {c.b_label()}", c.context_label(), *cells])
    if not rows or not shown:
        return None
    counts = [f"{m.info.label}: {n}" for m, per_metric in zip(shown, tests) if (n := sum(t.holm_p is not None for t in per_metric))]
    return Table(
        ["factor", "A − B", "where", *(f"{m.info.label} (points)" for m in shown)], rows,
        "Paired over the seeds both ran: mean difference per seed ± its 95% interval (Student t), two-sided "
        "paired t-test p-value and, where a column has tests, that p-value after Holm's correction for the number "
        f"of them ({', '.join(counts) or 'none'}; what the summary reads), number of seeds."
        + (f" Methods are compared only with the reference, {reference} (see Against {reference})." if reference else ""),
    )


def _test_cell(test: PairedTest, metric: ReportMetric) -> str:
    """`+1.20 ± 0.40 (p = 0.012, Holm 0.036), n=3`, or `-` without shared seeds."""
    d = test.difference
    if d is None:
        return "-"
    if test.holm_p is None or d.p_value is None:
        return f"{d.format(metric.scale, metric.digits)}, n={d.n}"
    interval = PairedDifference(d.mean, d.half_width, None, d.seeds).format(metric.scale, metric.digits)
    holm = "< 0.001" if test.holm_p < 0.001 else f"{test.holm_p:.2g}"
    return f"{interval} ({format_p(d.p_value)}, Holm {holm}), n={d.n}"


__all__ = ["Claim", "ClaimResult", "check_claims", "comparisons_table", "format_p"]
