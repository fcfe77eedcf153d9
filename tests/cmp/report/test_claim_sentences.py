"""What a claim's sentence and a paired difference print, and the seeds they are paired on,
exactly: each wording and boundary is what a reader of the report relies on."""

from __future__ import annotations

import pytest

from cmp.api.results import MetricInfo
from cmp.report.claims import Claim, ClaimResult, StepResult, check_claims
from cmp.report.groups import group_results
from cmp.report.metrics import ReportMetric
from cmp.report.paired import PairedDifference, format_p, seed_values
from tests.cmp.report.synthetic import cell

KNN = ReportMetric("knn_top1", MetricInfo("kNN top-1"))
RANK = ReportMetric("rankme", MetricInfo("RankMe", percent=False))
CLAIM = Claim("loss.name", ("nt_xent", "nt_logistic", "margin_triplet"), source="table 2")


def difference(mean: float, half: float | None, p: float | None, n: int = 3) -> PairedDifference:
    return PairedDifference(mean, half, p, tuple(range(n)))


def test_an_interval_touching_zero_supports_nothing() -> None:
    assert difference(0.01, 0.01, 0.05).verdict() == "inconclusive"
    assert difference(-0.01, 0.01, 0.05).verdict() == "inconclusive"
    assert difference(0.0101, 0.01, 0.04).verdict() == "supported"
    assert difference(-0.0101, 0.01, 0.04).verdict() == "contradicted"


def test_a_difference_is_printed_in_the_metrics_scale() -> None:
    assert difference(0.02, 0.01, 0.03).format(100.0) == "+2.00 ± 1.00 (p = 0.03)"
    assert difference(-0.5, 0.25, None).format(1.0, 3) == "-0.500 ± 0.250"
    assert difference(0.02, None, None, n=1).format(100.0) == "+2.00"
    assert format_p(0.001) == "p = 0.001" and format_p(0.000999) == "p < 0.001" and format_p(0.0123) == "p = 0.012"


def test_a_supported_claim_reads_yes_with_every_step() -> None:
    steps = (StepResult("nt_xent", "nt_logistic", difference(0.02, 0.01, 0.03), "nt_xent", "nt_logistic (temperature=1.0)"),
             StepResult("nt_logistic", "margin_triplet", difference(0.03, 0.005, 0.001)))
    assert ClaimResult(CLAIM, KNN, "simclr", steps).sentence() == (
        "**loss: nt_xent > nt_logistic > margin_triplet** (table 2) — simclr, kNN top-1: **yes**; "
        "nt_xent − nt_logistic (temperature=1.0) +2.00 ± 1.00 points over 3 seeds, p = 0.03 (holds); "
        "nt_logistic − margin_triplet +3.00 ± 0.50 points over 3 seeds, p = 0.001 (holds).")


def test_a_reversed_claim_with_a_step_without_shared_seeds_reads_no_and_names_both_steps() -> None:
    steps = (StepResult("nt_xent", "nt_logistic", None),
             StepResult("nt_logistic", "margin_triplet", difference(-2.0, 0.5, 0.004)))
    claim = Claim("loss.name", ("nt_xent", "nt_logistic", "margin_triplet"))
    assert ClaimResult(claim, RANK, "moco", steps).sentence() == (
        "**loss: nt_xent > nt_logistic > margin_triplet** — moco, RankMe: **no (reversed)**; "
        "nt_xent − nt_logistic: no shared seeds; "
        "nt_logistic − margin_triplet -2.000 ± 0.500 over 3 seeds, p = 0.004 (reversed).")


def test_a_single_seed_step_has_no_interval_and_the_claim_is_not_shown() -> None:
    steps = (StepResult("nt_xent", "nt_logistic", difference(0.02, None, None, n=1)),)
    assert StepResult("a", "b", None).labels() == ("a", "b")
    assert ClaimResult(CLAIM, KNN, "simclr", steps).sentence() == (
        "**loss: nt_xent > nt_logistic > margin_triplet** (table 2) — simclr, kNN top-1: "
        "**not shown (an interval holds 0)**; nt_xent − nt_logistic +2.00 points over 1 seeds (interval holds 0).")


def test_a_claim_from_a_recipe_keeps_its_metrics_and_source() -> None:
    raw = {"factor": "train.batch_size", "order": [512, 256], "metrics": ["knn_top1"], "source": "figure 9"}
    assert Claim.from_dict(raw) == Claim("train.batch_size", (512, 256), ("knn_top1",), "figure 9")
    assert Claim.from_dict({"factor": "method", "order": ["simclr", "moco"]}) == Claim("method", ("simclr", "moco"))


def test_seeds_come_from_the_sweep_or_else_the_config_and_results_without_the_metric_are_left_out() -> None:
    swept = [cell("simclr", s, 64, 0.5 + s / 10) for s in range(3)]
    unswept = [r.model_copy(update={"sweep": {k: v for k, v in r.sweep.items() if k != "train.seed"}}) for r in swept]
    (group,) = group_results(unswept)
    assert seed_values(group, "knn_top1") == pytest.approx({0: 0.5, 1: 0.6, 2: 0.7})
    missing = unswept[1].model_copy(update={"metrics": {"linear_top1": 0.1}})
    (partial,) = group_results([unswept[0], missing, unswept[2]])
    assert seed_values(partial, "knn_top1") == pytest.approx({0: 0.5, 2: 0.7})


def test_a_claim_names_structured_values_in_any_key_order() -> None:
    """A swept value that is a mapping (written in another key order in the claim) is the same value."""
    results = []
    for seed in range(3):
        for crop, knn in (({"low": 0.2, "high": 1.0}, 0.8 + seed / 100), ({"low": 0.5, "high": 1.0}, 0.7)):
            r = cell("simclr", seed, 64, knn)
            results.append(r.model_copy(update={"sweep": {"augmentation.params.crop": crop, "train.seed": seed}}))
    claim = Claim("augmentation.params.crop", ({"high": 1.0, "low": 0.2}, {"high": 1.0, "low": 0.5}))
    (result,) = check_claims([claim], group_results(results), [KNN])
    assert result.verdict == "supported" and len(result.steps) == 1


def test_the_comparisons_table_shows_each_metric_in_points_and_a_dash_without_shared_seeds() -> None:
    from cmp.report.claims import comparisons_table
    from cmp.report.metrics import report_metrics

    xent = [cell("simclr", s, 64, 0.80 + 0.01 * s) for s in range(2)]  # linear = knn + 0.05
    logistic = [cell("simclr", s, 64, 0.78 + 0.02 * s, loss="nt_logistic") for s in range(2)]
    for r in logistic:  # no linear probe on this side: that column has no pairs
        r.metrics.pop("linear_top1")
    margin = [cell("simclr", s + 5, 64, 0.5, loss="margin_triplet") for s in range(2)]  # other seeds: no pairs at all
    results = xent + logistic + margin
    table = comparisons_table(group_results(results), report_metrics(results))
    assert table is not None
    assert table.header == ["factor", "A − B", "where", "kNN top-1 (points)", "linear top-1 (points)"]
    # nt_xent − nt_logistic per seed: +2 and +1 points: mean +1.50 ± t(0.975, 1) * 0.5 = 6.35, p = 0.2
    assert table.rows == [["loss", "nt_xent − nt_logistic", "simclr, batch_size=64", "+1.50 ± 6.35 (p = 0.2, Holm 0.2), n=2", "-"]]  # one test: Holm changes nothing
    assert table.caption == ("Paired over the seeds both ran: mean difference per seed ± its 95% interval (Student t), "
                             "two-sided paired t-test p-value and, where a column has tests, that p-value after Holm's "
                             "correction for the number of them (kNN top-1: 1; what the summary reads), number of seeds.")
    assert comparisons_table(group_results(margin), report_metrics(margin)) is None  # one group: nothing to compare


def test_a_claim_is_checked_on_the_metrics_it_names_or_else_on_every_percentage() -> None:
    from cmp.report.metrics import report_metrics

    results = [cell("simclr", s, 64, 0.80 + 0.01 * s) for s in range(3)]
    results += [cell("simclr", s, 64, 0.70, loss="nt_logistic") for s in range(3)]
    for r in results:  # a metric that is not a percentage (RankMe): no claim is checked on it unless named
        r.metrics["rankme"] = 10.0 + r.metrics["knn_top1"]
        r.metric_info["rankme"] = RANK.info
    metrics = report_metrics(results)
    claim = Claim("loss.name", ("nt_xent", "nt_logistic"))
    groups = group_results(results)
    assert [r.metric.name for r in check_claims([claim], groups, metrics)] == ["knn_top1", "linear_top1"]
    named = Claim("loss.name", ("nt_xent", "nt_logistic"), ("rankme",))
    assert [r.metric.name for r in check_claims([named], groups, metrics)] == ["rankme"]


def test_a_claims_pair_that_never_ran_side_by_side_is_skipped_and_the_next_pair_still_checked() -> None:
    results = [cell("simclr", s, 128, 0.9, loss="nt_xent") for s in range(3)]  # nt_xent ran at 128 only
    results += [cell("simclr", s, 64, 0.8 + 0.01 * s, loss="nt_logistic") for s in range(3)]
    results += [cell("simclr", s, 64, 0.5, loss="margin_triplet") for s in range(3)]
    (result,) = check_claims([CLAIM], group_results(results), [KNN])
    assert [(s.better, s.worse) for s in result.steps] == [("nt_logistic", "margin_triplet")]
    assert result.verdict == "supported"
