"""Paired statistics and claims against hand computations on synthetic results with known differences."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cmp.report import write_report
from cmp.report.claims import Claim, check_claims, comparisons_table
from cmp.report.groups import group_results
from cmp.report.metrics import report_metrics
from cmp.report.paired import one_factor_comparisons, paired_difference
from tests.cmp.report.synthetic import baseline, cell

T_975_2 = 4.302652729911275  # Student t quantile, 0.975, 2 degrees of freedom (tables)


def test_paired_difference_matches_a_hand_computation() -> None:
    a = {0: 0.80, 1: 0.83, 2: 0.81}
    b = {0: 0.78, 1: 0.80, 2: 0.80, 7: 0.5}  # seed 7 has no partner: left out
    d = [0.02, 0.03, 0.01]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    t = mean / (sd / math.sqrt(3))
    diff = paired_difference(a, b)
    assert diff is not None and diff.seeds == (0, 1, 2)
    assert diff.mean == pytest.approx(0.02)
    assert diff.half_width == pytest.approx(T_975_2 * sd / math.sqrt(3))
    # two-sided p of t = 3.4641 with 2 degrees of freedom: 2 * (1 - F(t)), F from the closed form for 2 dof
    p = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert diff.p_value == pytest.approx(p)
    # sd 0.01: the interval is 0.02 ± 0.0248, which holds 0
    assert diff.verdict() == "inconclusive"


def test_the_verdict_reads_the_interval() -> None:
    up = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 1.4, 2: 2.6})  # d = 0.5, 0.6, 0.4
    assert up is not None and up.verdict() == "supported"
    down = paired_difference({0: 0.5, 1: 1.4, 2: 2.6}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert down is not None and down.verdict() == "contradicted"
    noisy = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 2.5, 2: 3.1})
    assert noisy is not None and noisy.verdict() == "inconclusive"
    single = paired_difference({0: 1.0}, {0: 0.0})
    assert single is not None and single.half_width is None and single.p_value is None
    assert single.verdict() == "inconclusive"
    assert paired_difference({0: 1.0}, {1: 0.0}) is None
    constant = paired_difference({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})
    assert constant is not None and constant.half_width == 0.0 and constant.p_value == 0.0
    assert constant.format(100.0) == "+50.00 ± 0.00 (p < 0.001)"
    same = paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})  # no difference at all: p = 1, not scipy's nan
    assert same is not None and (same.mean, same.half_width, same.p_value) == (0.0, 0.0, 1.0)
    broken = paired_difference({0: math.nan, 1: 0.5}, {0: 0.1, 1: 0.2})  # a NaN metric: no p-value rather than nan
    assert broken is not None and broken.p_value is None


def test_labels_name_a_parts_parameters_and_an_empty_context_is_a_dash() -> None:
    from cmp.report.paired import METHOD_FACTOR, Comparison, owner

    (group,) = group_results([cell("simclr", 0, 256, 0.8)])
    both = Comparison("loss.name", group, group, "nt_logistic", "nt_xent", {METHOD_FACTOR: "simclr"},
                      {"loss.params.temperature": 0.5, "loss.params.semi_hard": True})
    assert both.a_label() == "nt_logistic (semi_hard=true, temperature=0.5)" and both.b_label() == "nt_xent"
    assert both.context_label() == "simclr"
    assert Comparison(METHOD_FACTOR, group, group, "simclr", "moco", {}).context_label() == "-"
    assert owner("loss.params.temperature") == "loss.name"
    assert owner("train.batch_size") is None and owner("method") is None


def loss_results() -> list:  # type: ignore[type-arg]
    """SimCLR with three losses, three seeds; nt_xent = nt_logistic + (2, 3, 1) points per seed."""
    results = []
    for seed, (xent, logistic, margin) in enumerate([(0.82, 0.80, 0.70), (0.84, 0.81, 0.72), (0.81, 0.80, 0.75)]):
        results.append(cell("simclr", seed, 256, xent, loss="nt_xent"))
        results.append(cell("simclr", seed, 256, logistic, loss="nt_logistic"))
        results.append(cell("simclr", seed, 256, margin, loss="margin_triplet"))
    return results


def test_one_factor_comparisons_pair_groups_that_differ_in_one_setting() -> None:
    results = loss_results() + [cell("moco", s, 256, 0.7, loss="nt_xent", negatives="queue") for s in range(3)]
    comparisons = one_factor_comparisons(group_results(results))
    described = sorted((c.factor, c.a_value, c.b_value) for c in comparisons)
    assert described == [
        ("loss.name", "nt_logistic", "margin_triplet"),
        ("loss.name", "nt_xent", "margin_triplet"), ("loss.name", "nt_xent", "nt_logistic"),
        ("method", "moco", "simclr"),  # only at nt_xent: the loss differs otherwise too
    ] or described == [
        ("loss.name", "nt_logistic", "margin_triplet"), ("loss.name", "nt_xent", "margin_triplet"),
        ("loss.name", "nt_xent", "nt_logistic"), ("method", "simclr", "moco"),
    ]


def with_temperature(result, temperature: float):  # type: ignore[no-untyped-def]
    """The cell as a second sweep grid sets it: `loss.params.temperature` beside `loss.name`."""
    return result.model_copy(update={"sweep": {**result.sweep, "loss.params.temperature": temperature}})


def test_a_loss_swept_with_its_own_temperature_is_one_factor_with_the_other_losses() -> None:
    """Grid 1 sweeps nt_xent and margin_triplet, grid 2 nt_logistic at temperature 0.5: the
    paper's table 2 compares losses each at its tuned temperature, so these are one factor."""
    results = [r if r.sweep["loss.name"] != "nt_logistic" else with_temperature(r, 0.5) for r in loss_results()]
    groups = group_results(results)
    described = sorted((c.factor, c.a_label(), c.b_label(), c.context_label()) for c in one_factor_comparisons(groups))
    assert described == [
        ("loss.name", "nt_logistic (temperature=0.5)", "margin_triplet", "simclr, batch_size=256"),
        ("loss.name", "nt_xent", "margin_triplet", "simclr, batch_size=256"),
        ("loss.name", "nt_xent", "nt_logistic (temperature=0.5)", "simclr, batch_size=256"),
    ]
    metrics = [m for m in report_metrics(results) if m.name == "knn_top1"]
    (result,) = check_claims([Claim("loss.name", ("nt_xent", "nt_logistic", "margin_triplet"))], groups, metrics)
    assert [s.labels() for s in result.steps] == [("nt_xent", "nt_logistic (temperature=0.5)"),
                                                  ("nt_logistic (temperature=0.5)", "margin_triplet")]
    assert result.steps[0].difference is not None and result.steps[0].difference.mean == pytest.approx(0.02)
    assert "nt_xent − nt_logistic (temperature=0.5) +2.00 ± 2.48 points" in result.sentence()
    # two temperatures of one loss: the temperature is the factor, the loss its context
    hotter = [with_temperature(r, 1.0) for r in loss_results() if r.sweep["loss.name"] == "nt_logistic"]
    (pair,) = [c for c in one_factor_comparisons(group_results(results + hotter)) if c.factor == "loss.params.temperature"]
    assert (pair.a_value, pair.b_value) in ((0.5, 1.0), (1.0, 0.5)) and "loss=nt_logistic" in pair.context_label()


def test_a_claim_is_checked_pair_by_pair_with_its_numbers() -> None:
    groups = group_results(loss_results())
    metrics = [m for m in report_metrics(loss_results()) if m.name == "knn_top1"]
    (result,) = check_claims([Claim("loss.name", ("nt_xent", "nt_logistic", "margin_triplet"), source="table 2")],
                             groups, metrics)
    first, second = result.steps
    assert (first.better, first.worse) == ("nt_xent", "nt_logistic")
    assert first.difference is not None and first.difference.mean == pytest.approx(0.02)
    assert second.difference is not None and second.difference.mean == pytest.approx((0.10 + 0.09 + 0.05) / 3)
    # xent − logistic: d = (2, 3, 1) points, interval ± 4.30 * 1 / sqrt(3) = ± 2.48: holds 0
    assert first.difference.verdict() == "inconclusive"
    assert second.difference.verdict() == "supported"
    assert result.verdict == "inconclusive"
    sentence = result.sentence()
    assert "nt_xent − nt_logistic +2.00 ± 2.48 points over 3 seeds, p = " in sentence
    assert "(interval holds 0)" in sentence and "(holds)" in sentence
    assert "not shown" in sentence and "(table 2)" in sentence
    # the reverse order is contradicted by the clear margin_triplet step
    (reverse,) = check_claims([Claim("loss.name", ("margin_triplet", "nt_logistic"))], groups, metrics)
    assert reverse.verdict == "contradicted"


def test_the_report_ends_with_claims_and_flags_methods_below_a_baseline(tmp_path: Path) -> None:
    results = loss_results()
    supervised = baseline("supervised", 0.95, 0.95).model_copy(update={"reference": "ceiling"})
    baselines = [baseline("raw_pixels", 0.79, 0.83), supervised]
    invocation = {"command": "cmp run x.yaml", "environment": {"device_name": "cpu"},
                  "claims": [{"factor": "loss.name", "order": ["nt_xent", "margin_triplet"], "metrics": ["knn_top1"]}],
                  "overrides": ["train.epochs=1"], "wall_time_s": 400.0}
    md = write_report("losses", results, baselines, tmp_path, invocation, "Three losses.")["markdown"].read_text()
    assert md.index("## Summary") < md.index("## Methods") < md.index("## Claims and paired comparisons")
    # margin_triplet's knn mean 72.33 < raw pixels 79.00; nt_logistic's 80.33 > 79.00
    assert ("**Below a baseline:** simclr (batch_size=256, loss=margin_triplet): below raw_pixels on kNN top-1 "
            "(72.33 vs 79.00); raw_pixels on linear top-1 (77.33 vs 83.00).") in md
    assert "loss=nt_logistic): below" not in md
    # every method is below the supervised ceiling: shown in the table, never flagged
    assert "below supervised" not in md and "supervised: an upper reference, not flagged" in md
    assert "Claim nt_xent > margin_triplet (simclr, batch_size=256, kNN top-1): **reproduced**" in md
    assert "*The recipe's description; this run changed it with `--set train.epochs=1`:* Three losses." in md
    table = comparisons_table(group_results(results), report_metrics(results))
    assert table is not None and len(table.rows) == 3


def test_the_settings_table_shows_what_ran_and_the_time_split_adds_up(tmp_path: Path) -> None:
    results = [cell("simclr", s, 64, 0.8) for s in range(2)]
    changed = [r.model_copy(update={"config": {**r.config, "train": {**r.config["train"], "epochs": 7,
                                                                      "precision": "bf16", "micro_batch": 32}}})
               for r in results]
    md = write_report("settings", changed, [], tmp_path, {"wall_time_s": 60.0})["markdown"].read_text()
    # epochs as trained (TrainStats says 2), precision and micro batch as configured
    row = next(line for line in md.splitlines() if line.startswith("| simclr (batch_size=64, loss=nt_xent) | 2 | 20 |"))
    assert "| 64 (32 a chunk) |" in row and "| bf16 |" in row
    whole = [r.model_copy(update={"config": {**r.config, "train": {**r.config["train"], "micro_batch": 64}}}) for r in results]
    md_whole = write_report("whole", whole, [], tmp_path / "whole", {})["markdown"].read_text()
    assert "| 64 |" in md_whole and "a chunk" not in md_whole  # a chunk as large as the batch splits nothing
    # two cells of 10 s and 11 s training, 12 s wall each, in 60 s: training 21 s = 35%
    assert "| training (the loops) | 0.3 | 35% |" in md
    assert "Training is 88% of the cells' own wall time" in md  # 21 of 24 s
    assert "| total | 1.0 | 100% |" in md
    # the last cmp run took 5 s: it computed none of the 24 s of cells (cached), so they are the total
    cached = write_report("cached", changed, [], tmp_path / "cached", {"wall_time_s": 5.0})["markdown"].read_text()
    assert "| training (the loops) | 0.3 | 88% |" in cached and "| total | 0.4 | 100% |" in cached
    assert "rest of the run" not in cached and "the last one took 0.1 min" in cached


def test_only_groups_that_differ_in_exactly_one_shared_factor_are_paired() -> None:
    def at(loss: str, batch: int, **extra: object) -> list:  # type: ignore[type-arg]
        runs = [cell("simclr", s, batch, 0.8, loss=loss) for s in range(2)]
        return [r.model_copy(update={"sweep": {**r.sweep, **extra}}) for r in runs]

    results = (at("nt_xent", 64) + at("nt_logistic", 128)  # two factors apart: no pair, and the search goes on
               + at("nt_logistic", 64)  # one factor from the first: a pair
               + at("nt_xent", 64, **{"train.steps": 100})  # a key the others lack: a difference, not a pair
               + at("margin_triplet", 64, **{"train.steps": 100})  # paired with the one above only
               + at("nt_xent", 32))  # paired with the first, after the keyed group the search passed over
    pairs = {(c.factor, c.a_value, c.b_value, tuple(sorted(c.context))) for c in one_factor_comparisons(group_results(results))}
    assert pairs == {
        ("loss.name", "nt_xent", "nt_logistic", ("method", "train.batch_size")),
        ("train.batch_size", 128, 64, ("loss.name", "method")),
        ("loss.name", "nt_xent", "margin_triplet", ("method", "train.batch_size", "train.steps")),
        ("train.batch_size", 64, 32, ("loss.name", "method")),
    }


def test_settings_every_run_shares_are_said_once_one_row_per_setting() -> None:
    from cmp.report.tables import settings_tables

    results = [cell("simclr", 0, 128, 0.8)] + [r.model_copy(update={"config": {**r.config, "train": {**r.config["train"],
                                                                                              "precision": "bf16"}}})
                                       for r in [cell("moco", 0, 128, 0.7)]]
    differing, shared = settings_tables(group_results(results))
    assert differing.header == ["run", "precision"]  # the one setting in which the runs differ
    assert [row[1] for row in differing.rows] == ["-", "bf16"]
    assert ["batch", "128"] in shared.rows and shared.header == ["setting (every run)", "value"]
    (alone,) = settings_tables(group_results([cell("simclr", 0, 128, 0.8)] + [cell("moco", 0, 128, 0.7)]))
    assert alone.header == ["setting (every run)", "value"]  # nothing differs: no table of runs
