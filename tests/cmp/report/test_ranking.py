"""No winner from noise: the summary names a best run only where Holm-corrected paired tests show it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cmp.api.results import RunResult
from cmp.report import write_report
from cmp.report.groups import group_results
from cmp.report.metrics import report_metrics
from cmp.report.paired import holm_adjusted, one_factor_comparisons, paired_difference, seed_values
from cmp.report.ranking import paired_tests, ranking_line, seed_spread
from tests.cmp.report.synthetic import cell


def test_holm_matches_a_hand_computation() -> None:
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> held at 0.06 (step-down)
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([]) == []


def runs(method: str, knn: list[float]) -> list[RunResult]:
    """One cell per seed 0, 1, ... of `method` at kNN top-1 `knn[seed]`."""
    return [cell(method, seed, 128, value) for seed, value in enumerate(knn)]


def line(results: list[RunResult]) -> str:
    groups = group_results(results)
    (knn,) = [m for m in report_metrics(results) if m.name == "knn_top1"]
    found = ranking_line(groups, paired_tests(one_factor_comparisons(groups), knn), knn)
    assert found is not None
    return found


def test_a_one_seed_gap_of_a_tenth_of_a_point_names_no_winner() -> None:
    text = line(runs("moco", [0.8444]) + runs("simclr", [0.8434]))
    assert "Best on" not in text and "no best run named" in text
    assert "moco (batch_size=128, loss=nt_xent), 84.44" in text  # the highest mean, said as such
    assert "+0.10 points over 1 seed" in text and "order is not established" in text
    assert "no run in this report has several seeds" in text and "one seed cannot rank runs" in text


def test_with_one_seed_the_spread_measured_by_runs_with_several_seeds_is_quoted() -> None:
    byol = runs("byol", [0.70, 0.72, 0.74])  # sd 2 points; seed 0 shared with the others
    text = line(runs("moco", [0.8444]) + runs("simclr", [0.8434]) + byol)
    assert "seed-to-seed standard deviation of kNN top-1 measured in this report is 2.00 points (pooled over 1 run" in text
    # pooled over groups: sqrt((2 * 0.02**2 + 1 * 0.01**2 * 2) / 3) for sds 0.02 (n=3) and 0.01 (n=2)
    groups = group_results(byol + runs("simclr", [0.80, 0.80 + 0.01 * math.sqrt(2)]))
    spread = seed_spread(groups, "knn_top1")
    assert spread is not None and spread[1] == 2
    assert spread[0] == pytest.approx(math.sqrt((2 * 0.02**2 + 1 * 0.01**2) / 3))


def test_a_clear_multi_seed_gap_that_survives_holm_names_the_winner() -> None:
    simclr = [0.80, 0.82, 0.81]
    moco = [v - d for v, d in zip(simclr, (0.050, 0.051, 0.049))]
    text = line(runs("simclr", simclr) + runs("moco", moco))
    assert text.startswith("- Best on kNN top-1: simclr (batch_size=128, loss=nt_xent), 81.00 ± ")
    assert "Holm's correction for the 1 paired test this report makes" in text
    assert "closest: moco (batch_size=128, loss=nt_xent), +5.00 points over 3 seeds, Holm p < 0.001" in text


def test_a_gap_that_passes_uncorrected_but_fails_holm_names_no_winner() -> None:
    b = [0.80, 0.82, 0.81]
    a = [v + d for v, d in zip(b, (0.008, 0.012, 0.016))]  # t = 0.012 / (0.004 / sqrt 3) = 5.2 on 2 dof
    c = [v - d for v, d in zip(b, (0.01, -0.01, 0.005))]
    results = runs("a", a) + runs("b", b) + runs("c", c)
    groups = group_results(results)
    raw = paired_difference(seed_values(groups[0], "knn_top1"), seed_values(groups[1], "knn_top1"))
    assert raw is not None and raw.p_value is not None and raw.p_value < 0.05  # significant alone
    text = line(results)
    assert "Best on" not in text and "no best run named" in text
    assert "is not distinguishable from b (batch_size=128, loss=nt_xent) and c (batch_size=128, loss=nt_xent)" in text
    assert "Holm's correction for the 3 paired tests this report makes on kNN top-1" in text
    # a ~ b's p is the smallest of the three: Holm multiplies it by 3
    assert f"Holm p = {min(1.0, 3 * raw.p_value):.2g}" in text


def test_a_run_not_paired_with_the_leader_keeps_it_from_being_named() -> None:
    far = [c.model_copy(update={"sweep": {**c.sweep, "train.batch_size": 64}}) for c in runs("moco", [0.5, 0.5, 0.5])]
    text = line(runs("simclr", [0.80, 0.82, 0.81]) + far)  # differ in method and batch size: no pair
    assert "no best run named" in text and "was not compared in pairs with moco" in text


def test_the_reports_summary_says_why_no_winner_is_named(tmp_path: Path) -> None:
    results = runs("moco", [0.8444]) + runs("simclr", [0.8434])
    md = write_report("one_seed", results, [], tmp_path, {})["markdown"].read_text()
    summary = md[md.index("## Summary"):md.index("## Methods")]
    assert "Best on" not in summary and "- kNN top-1: no best run named." in summary
    assert "- linear top-1: no best run named." in summary

