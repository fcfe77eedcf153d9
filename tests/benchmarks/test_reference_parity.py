"""The parity benchmark runs end to end at smoke size, and its table's statistics are right.

The smoke run checks that both sides train, that each lightly-trained encoder's file fits
cmp's convnet exactly, and that every (library, method) has a row of accuracies whose
paired difference is the printed cmp - lightly. Its accuracies mean nothing (one epoch of
a few digits). The statistics are checked on made-up scores against scipy's t quantile.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from scipy import stats

from benchmarks.reference_parity import LABELS, MARGIN_POINTS, METHODS, SMOKE, Scores, report, verdict
from cmp.api.contracts import DataInfo
from cmp.report.paired import paired_difference
from cmp_plugins.encoders import convnet

ROOT = Path(__file__).resolve().parents[2]


def rows(lines: list[str], first: str) -> list[list[str]]:
    """The cells of a printed Markdown table's body, found by its first header cell."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return body


def test_smoke_run_trains_both_sides_and_prints_one_row_per_library_and_method(tmp_path: Path) -> None:
    env = {**os.environ, "CMP_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.reference_parity", "--smoke", "--dataset", "digits", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.startswith("machine: ") and "\ncommand: " in out and "reference_parity.py --smoke" in out
    lines = out.splitlines()

    accuracy = {(row[0], row[1]): row for row in rows(lines, "library")}
    assert set(accuracy) == {(library, LABELS[m]) for library in ("cmp", "lightly") for m in METHODS}
    for row in accuracy.values():
        assert all(0 <= float(value) <= 100 for value in row[2:4]), row
        assert row[4] == "0"  # one seed
    for row in rows(lines, "method"):
        method, metric, difference, interval, said = row
        column = 2 if metric == "kNN top-1" else 3
        expected = float(accuracy[("cmp", method)][column]) - float(accuracy[("lightly", method)][column])
        assert abs(float(difference) - expected) <= 0.011, row  # each printed to 0.01
        assert interval == "n/a" and said == "untested (one seed)"

    info = DataInfo("digits", 1, 8, 8, 10, (0.5,), (0.25,))
    for method in METHODS:
        weights = torch.load(tmp_path / f"lightly-{method}-seed0.pt", weights_only=True)
        encoder = convnet(info, widths=SMOKE.widths)
        assert encoder.load_state_dict(weights, strict=True)
        assert set(weights) == set(encoder.state_dict())


def test_table_gives_mean_and_sd_over_seeds_and_the_paired_t_interval() -> None:
    cmp = {0: 0.801, 1: 0.812, 2: 0.795}
    lightly = {0: 0.790, 1: 0.815, 2: 0.781}
    table = {(library, method, metric): Scores(dict(values))
             for library, values in (("cmp", cmp), ("lightly", lightly))
             for method in METHODS for metric in ("knn_top1", "linear_top1")}
    lines = report(table)
    first = rows(lines, "library")[0]
    points = [100 * v for v in cmp.values()]
    assert first[:2] == ["cmp", "SimCLR"]
    assert first[2] == f"{statistics.mean(points):.2f} ± {statistics.stdev(points):.2f}"

    differences = [100 * (cmp[s] - lightly[s]) for s in cmp]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(differences) / math.sqrt(3)
    low, high = statistics.mean(differences) - half, statistics.mean(differences) + half
    row = rows(lines, "method")[0]
    assert row[2] == f"{statistics.mean(differences):+.2f}"
    assert row[3] == f"[{low:+.2f}, {high:+.2f}]"
    assert re.search(r"margin ±2 \(stated in advance\)", "\n".join(lines))


def test_verdict_reads_the_interval_against_the_margin() -> None:
    margin = MARGIN_POINTS / 100
    inside = paired_difference({0: 0.50, 1: 0.51, 2: 0.50}, {0: 0.50, 1: 0.50, 2: 0.50})
    assert inside is not None and verdict(inside).startswith("equivalent")
    shifted = paired_difference({0: 0.5 + 2 * margin, 1: 0.5 + 2.1 * margin, 2: 0.5 + 1.9 * margin}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert shifted is not None and verdict(shifted).startswith("differs")
    noisy = paired_difference({0: 0.5 + margin, 1: 0.5 - margin, 2: 0.5}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert noisy is not None and verdict(noisy).startswith("not shown")
    one = paired_difference({0: 0.6}, {0: 0.5})
    assert verdict(one) == "untested (one seed)"
