"""Every method against a reference method: paired over seeds, Holm-corrected over the (methods − 1) tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from cmp.api.loader import Plugins
from cmp.api.results import RunResult
from cmp.commands.report import report_command
from cmp.commands.run import RunRequest, _manifest
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.distributed import Processes
from cmp.engine.rundir import MANIFEST, RESULT
from cmp.report import write_report
from cmp.report.claims import comparisons_table
from cmp.report.groups import group_results
from cmp.report.metrics import ReportMetric, report_metrics
from cmp.report.reference import reference_line, reference_table, reference_tests, standing
from tests.cmp.report.synthetic import cell

SIMCLR = [0.80, 0.82, 0.81]
CLEAR = [0.050, 0.051, 0.049]
"""A method's per-seed gain over simclr: 5 points, t ≈ 87 on 2 degrees of freedom (p ≈ 1.3e-4)."""
MARGINAL = [0.008, 0.012, 0.016]
"""t = 0.012 / (0.004 / √3) ≈ 5.2 (p ≈ 0.035): significant alone, not after Holm over 10 tests."""
NOISE = [[0.01, -0.01, 0.005], [-0.004, 0.006, -0.001], [0.02, -0.015, 0.0], [0.003, 0.001, -0.006],
         [-0.01, 0.0, 0.012], [0.007, -0.002, -0.009], [0.0, 0.004, -0.011], [-0.006, 0.009, 0.002]]
"""Eight methods whose differences from simclr are noise."""


def runs(method: str, values: list[float]) -> list[RunResult]:
    """One cell per seed 0, 1, ... of `method` at kNN top-1 `values[seed]`."""
    return [cell(method, seed, 128, value) for seed, value in enumerate(values)]


def eleven_methods() -> list[RunResult]:
    """simclr and ten others over 3 seeds: one clearly above, one marginal, eight noise."""
    results = runs("simclr", SIMCLR) + runs("clear", [v + d for v, d in zip(SIMCLR, CLEAR)])
    results += runs("marginal", [v + d for v, d in zip(SIMCLR, MARGINAL)])
    for i, diffs in enumerate(NOISE):
        results += runs(f"noise{i}", [v + d for v, d in zip(SIMCLR, diffs)])
    return results


def knn(results: list[RunResult]) -> ReportMetric:
    (metric,) = [m for m in report_metrics(results) if m.name == "knn_top1"]
    return metric


def test_a_clear_gain_is_above_and_a_marginal_one_fails_holm_over_ten_tests() -> None:
    results = eleven_methods()
    groups, metric = group_results(results), knn(results)
    tests = {t.comparison.a.method: t for t in reference_tests(groups, metric, "simclr")}
    assert len(tests) == 10 and all(t.comparison.b.method == "simclr" for t in tests.values())
    raw = {m: scipy_stats.ttest_rel([v + d for v, d in zip(SIMCLR, diffs)], SIMCLR).pvalue
           for m, diffs in (("clear", CLEAR), ("marginal", MARGINAL))}
    noise = sorted(scipy_stats.ttest_rel([v + d for v, d in zip(SIMCLR, diffs)], SIMCLR).pvalue for diffs in NOISE)
    assert raw["clear"] < raw["marginal"] < 0.05 < noise[0]  # so Holm multiplies them by 10 and by 9
    assert tests["clear"].holm_p == pytest.approx(10 * raw["clear"])
    assert tests["marginal"].holm_p == pytest.approx(9 * raw["marginal"])
    assert tests["clear"].difference is not None and tests["clear"].difference.mean == pytest.approx(0.05)
    assert standing(tests["clear"]) == "above"
    assert standing(tests["marginal"]) == "not distinguishable"
    assert {standing(tests[f"noise{i}"]) for i in range(8)} == {"not distinguishable"}

    line = reference_line(groups, metric, "simclr")
    assert line == ("- Against simclr on kNN top-1 (Holm over 10 paired tests): above: clear; below: none; "
                    "not distinguishable: marginal, " + ", ".join(f"noise{i}" for i in range(8)) + ".")


def test_the_table_shows_difference_interval_p_holm_and_verdict() -> None:
    results = runs("simclr", SIMCLR) + runs("moco", [v - d for v, d in zip(SIMCLR, CLEAR)])
    results += runs("byol", [v + d for v, d in zip(SIMCLR, MARGINAL)])
    table = reference_table(group_results(results), knn(results), "simclr")
    assert table is not None
    assert table.header == ["method", "− simclr (points)", "95% interval", "p", "Holm p", "seeds", "verdict"]
    rows = {row[0]: row for row in table.rows}
    raw = scipy_stats.ttest_rel([v + d for v, d in zip(SIMCLR, MARGINAL)], SIMCLR).pvalue
    half = scipy_stats.t.ppf(0.975, 2) * 0.004 / 3 ** 0.5  # sd of (0.008, 0.012, 0.016) is 0.004
    # the larger of two p-values is Holm's last step, multiplied by 1: over two tests the marginal gain holds
    assert rows["byol"] == ["byol", "+1.20", f"[{100 * (0.012 - half):+.2f}, {100 * (0.012 + half):+.2f}]",
                            f"{raw:.2g}", f"{raw:.2g}", "3", "above"]
    assert rows["moco"][1] == "-5.00" and rows["moco"][-1] == "below"
    assert "Holm's correction for the 2 paired tests against simclr on kNN top-1" in table.caption


def test_one_seed_says_the_comparison_cannot_be_made(tmp_path: Path) -> None:
    results = runs("simclr", [0.8434]) + runs("moco", [0.8444]) + runs("byol", [0.70])
    groups, metric = group_results(results), knn(results)
    assert {standing(t) for t in reference_tests(groups, metric, "simclr")} == {"cannot be made"}
    line = reference_line(groups, metric, "simclr")
    assert line == ("- Against simclr on kNN top-1: the comparison cannot be made: moco, byol share one seed with "
                    "simclr, and one seed gives no paired test, so no order is established.")
    assert "above" not in line and "below" not in line
    table = reference_table(groups, metric, "simclr")
    assert table is not None and {row[-1] for row in table.rows} == {"cannot be made (one seed)"}
    md = write_report("one_seed", results, [], tmp_path, {"reference": "simclr"})["markdown"].read_text()
    assert "## Against simclr" in md and "Against simclr on kNN top-1: the comparison cannot be made" in md


def test_with_a_reference_only_its_comparisons_are_tabled_and_the_ranking_says_so(tmp_path: Path) -> None:
    results = runs("simclr", SIMCLR) + runs("byol", [v + d for v, d in zip(SIMCLR, CLEAR)])
    results += runs("moco", [v - d for v, d in zip(SIMCLR, CLEAR)])
    results += [cell("simclr", seed, 128, v - 0.1, loss="margin_triplet") for seed, v in enumerate(SIMCLR)]
    groups, metrics = group_results(results), report_metrics(results)
    every = comparisons_table(groups, metrics)
    table = comparisons_table(groups, metrics, "simclr")
    assert every is not None and table is not None
    assert sorted(row[1] for row in every.rows) == [
        "byol − moco", "nt_xent − margin_triplet", "simclr − byol", "simclr − moco"]
    assert sorted(row[1] for row in table.rows) == ["byol − simclr", "moco − simclr", "nt_xent − margin_triplet"]
    assert "(kNN top-1: 3, linear top-1: 3;" in table.caption and "only with the reference, simclr" in table.caption

    md = write_report("ref", results, [], tmp_path, {"reference": "simclr"})["markdown"].read_text()
    summary = md[md.index("## Summary"):md.index("## Methods")]
    assert "Best on" not in summary
    assert ("- kNN top-1: no best run named: only comparisons with simclr were made (see Against simclr), and the "
            "highest mean, byol (batch_size=128, loss=nt_xent), 86.00") in summary
    assert ("was not compared in pairs with moco (batch_size=128, loss=nt_xent); it was not compared in pairs with "
            "simclr (batch_size=128, loss=margin_triplet) (differing from it in more than one setting") in summary
    assert "- Against simclr on kNN top-1 (Holm over 2 paired tests): above: byol; below: moco;" in summary


def test_the_reference_itself_ahead_of_everyone_is_named_best(tmp_path: Path) -> None:
    results = runs("simclr", SIMCLR) + runs("moco", [v - d for v, d in zip(SIMCLR, CLEAR)])
    results += runs("byol", [v - 2 * d for v, d in zip(SIMCLR, CLEAR)])
    md = write_report("ref", results, [], tmp_path, {"reference": "simclr"})["markdown"].read_text()
    assert "- Best on kNN top-1: simclr (batch_size=128, loss=nt_xent)" in md
    assert "Holm's correction for the 2 paired tests this report makes on kNN top-1" in md


RECIPE = """\
name: ref
data: {dataset: digits}
train: {epochs: 1, batch_size: 32, device: cpu}
defaults: {encoder: convnet, optimizer: sgd}
methods:
  simclr: {preset: simclr}
  moco: {preset: moco}
reference: simclr
sweep: {train.seed: [0, 1, 2]}
"""


def test_cmp_report_from_a_manifest_keeps_the_reference(tmp_path: Path, plugins: Plugins) -> None:
    recipe_file = tmp_path / "ref.yaml"
    recipe_file.write_text(RECIPE)
    recipe = load_recipe(recipe_file)
    cells = resolve(recipe, plugins.registry)
    request = RunRequest(recipe_file, [], [], tmp_path / "runs", 1, 1, False, None, ["run", str(recipe_file)], "none", [])
    manifest = _manifest(recipe, cells, [], request, Processes(), "ref", 1.0)
    assert manifest["reference"] == "simclr"

    recipe_dir = tmp_path / "runs" / "ref"
    results = runs("simclr", SIMCLR) + runs("moco", [v - d for v, d in zip(SIMCLR, CLEAR)])
    for r in results:
        (recipe_dir / r.key).mkdir(parents=True)
        (recipe_dir / r.key / RESULT).write_text(r.to_json())
    (recipe_dir / MANIFEST).write_text(json.dumps({**manifest, "cells": []}, default=str))
    assert report_command(plugins, recipe_dir, tmp_path / "reports") == 0
    md = (tmp_path / "reports" / "ref" / "report.md").read_text()
    assert "## Against simclr" in md
    assert "- Against simclr on kNN top-1 (Holm over 1 paired test): above: none; below: moco;" in md
