"""Every method against one reference method: method − reference, paired over seeds.

A recipe's `reference: simclr` asks what a methods table asks — is each method above or
below SimCLR? — as one paired test per other method and metric, Holm-corrected over those
(methods − 1) tests, rather than over every pair of methods. A method is above (below) the
reference where its Holm-adjusted p is below `ALPHA` and its mean difference positive
(negative), and not distinguishable otherwise; a comparison over one shared seed has no
test, and is said to be one that cannot be made. With a reference, the report's other
method-against-method comparisons are dropped (`with_reference_only`), so the comparisons
table and the ranking's Holm family are the ones shown here; comparisons of another factor
(a swept loss, a batch size) stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from cmp.report.document import Section, Table
from cmp.report.groups import Group
from cmp.report.metrics import ReportMetric
from cmp.report.paired import METHOD_FACTOR, Comparison, format_p, one_factor_comparisons
from cmp.report.ranking import ALPHA, PairedTest, paired_tests

Standing = Literal["above", "below", "not distinguishable", "cannot be made", "no shared seed"]
STANDINGS: tuple[Standing, ...] = ("above", "below", "not distinguishable")
"""The verdicts a paired test can give, in the order the summary lists them."""


def with_reference_only(comparisons: Sequence[Comparison], reference: str | None) -> list[Comparison]:
    """`comparisons` less those between two methods neither of which is `reference`, the comparisons
    with it oriented method − reference; all of them, as found, when there is no reference."""
    if reference is None:
        return list(comparisons)
    kept = []
    for c in comparisons:
        if c.factor != METHOD_FACTOR:
            kept.append(c)
        elif c.b_value == reference:
            kept.append(c)
        elif c.a_value == reference:
            kept.append(replace(c, a=c.b, b=c.a, a_value=c.b_value, b_value=c.a_value,
                                a_params=c.b_params, b_params=c.a_params))
    return kept


def reference_tests(groups: Sequence[Group], metric: ReportMetric, reference: str) -> list[PairedTest]:
    """Each other method − `reference` on `metric` over shared seeds, Holm-adjusted over these tests only."""
    comparisons = with_reference_only(one_factor_comparisons(groups), reference)
    return paired_tests([c for c in comparisons if c.factor == METHOD_FACTOR], metric)


def standing(test: PairedTest) -> Standing:
    """What the test says of method − reference: above, below, not distinguishable, or no test."""
    d = test.difference
    if d is None:
        return "no shared seed"
    if test.holm_p is None:
        return "cannot be made"
    if test.holm_p < ALPHA and d.mean != 0:
        return "above" if d.mean > 0 else "below"
    return "not distinguishable"


def _labels(tests: Sequence[PairedTest]) -> list[str]:
    """Each tested method's name; with its swept settings when the tests span several contexts."""
    contexts = {t.comparison.context_label() for t in tests}
    return [t.comparison.a_label() if len(contexts) == 1 else t.comparison.a.label for t in tests]


def _not_paired(groups: Sequence[Group], tests: Sequence[PairedTest], reference: str) -> list[str]:
    """The finished groups of other methods that no test compared with `reference`."""
    tested = {id(t.comparison.a) for t in tests}
    return [g.label for g in groups if g.ok and g.method != reference and id(g) not in tested]


def reference_line(groups: Sequence[Group], metric: ReportMetric, reference: str) -> str:
    """The summary's line: `Against simclr on kNN top-1 (Holm over 10 paired tests): above: …; below: …; …`."""
    if not any(g.ok and g.method == reference for g in groups):
        return f"- Against {reference}: {reference} has no finished cell, so no comparison with it was made."
    tests = reference_tests(groups, metric, reference)
    named = list(zip(_labels(tests), (standing(t) for t in tests)))
    single = [n for n, v in named if v == "cannot be made"]
    one_seed = ", ".join(single)
    unpaired = ", ".join([n for n, v in named if v == "no shared seed"] + _not_paired(groups, tests, reference))
    family = sum(t.holm_p is not None for t in tests)
    head = f"- Against {reference} on {metric.info.label}"
    if family:
        head += f" (Holm over {family} paired test{'s' if family != 1 else ''}): "
        parts = [f"{s}: {', '.join(n for n, v in named if v == s) or 'none'}" for s in STANDINGS]
        if one_seed:
            parts.append(f"cannot be made (one seed shared with {reference}): {one_seed}")
    elif one_seed:
        head += ": the comparison cannot be made: "
        parts = [f"{one_seed} share{'s' if len(single) == 1 else ''} one seed with {reference}, and one seed gives "
                 "no paired test, so no order is established"]
    else:
        head += ": no comparison was made"
        parts = []
    if unpaired:
        parts.append(f"not compared in pairs (differing from {reference} in more than one setting, or sharing no "
                     f"seed with it): {unpaired}")
    return head + ("; " if parts and not family and not one_seed else "") + "; ".join(parts) + "."


def reference_table(groups: Sequence[Group], metric: ReportMetric, reference: str) -> Table | None:
    """One row per other method: method − reference, its 95% interval, p, Holm p, seeds and the verdict."""
    tests = reference_tests(groups, metric, reference)
    if not tests:
        return None
    scale, digits = metric.scale, metric.digits
    several = len({t.comparison.context_label() for t in tests}) > 1
    rows = []
    for label, test in zip(_labels(tests), tests):
        d, verdict = test.difference, standing(test)
        where = [test.comparison.context_label()] if several else []
        if d is None:
            rows.append([label, *where, "-", "-", "-", "-", "0", verdict])
            continue
        interval = "-" if d.half_width is None else (
            f"[{(d.mean - d.half_width) * scale:+.{digits}f}, {(d.mean + d.half_width) * scale:+.{digits}f}]")
        p, holm = _p(d.p_value), _p(test.holm_p)
        shown = f"{verdict} (one seed)" if verdict == "cannot be made" and d.n == 1 else verdict
        rows.append([label, *where, f"{d.mean * scale:+.{digits}f}", interval, p, holm, str(d.n), shown])
    family = sum(t.holm_p is not None for t in tests)
    unit = " (points)" if metric.info.percent else ""
    return Table(
        ["method", *(["where"] if several else []), f"− {reference}{unit}", "95% interval", "p", "Holm p", "seeds",
         "verdict"], rows,
        f"{metric.info.label}: each method − {reference}, paired over the seeds both ran: the mean difference per "
        f"seed, its 95% interval (Student t), the two-sided paired t-test's p, and that p after Holm's correction for "
        f"the {family} paired test{'s' if family != 1 else ''} against {reference} on {metric.info.label}. Above or "
        f"below where the Holm-adjusted p < {ALPHA:g}, not distinguishable otherwise; one shared seed gives no "
        "test, so that comparison cannot be made.",
    )


def _p(p: float | None) -> str:
    """`0.012`, `< 0.001`, or `-` without a test."""
    return "-" if p is None else format_p(p).removeprefix("p ").removeprefix("= ")


def reference_section(groups: Sequence[Group], metrics: Sequence[ReportMetric], reference: str) -> Section:
    """`Against simclr`: a table per percentage metric, or why there is none."""
    shown = [m for m in metrics if m.info.percent]
    tables = [t for t in (reference_table(groups, m, reference) for m in shown) if t]
    if tables:
        return Section(f"Against {reference}", list(tables))
    if not any(g.ok and g.method == reference for g in groups):
        return Section(f"Against {reference}", [f"{reference} has no finished cell, so no comparison with it was made."])
    return Section(f"Against {reference}", [f"No other method ran at {reference}'s settings with a seed it ran, so no "
                                            "comparison with it was made."])


__all__ = ["reference_line", "reference_section", "reference_table", "reference_tests", "standing",
           "with_reference_only"]
