"""The precision benchmark runs end to end at a tiny size: both precisions have a row
with a rate and one time per round, and the rule's choice is stated against the faster
side. Speeds at this size mean nothing; the rule's choice is checked against cmp.precision."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from cmp.precision import fastest_precision

ROOT = Path(__file__).resolve().parents[2]


def test_both_precisions_have_a_row_and_the_rules_choice_is_named_against_the_faster() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.precision", "--recipe", "recipes/simclr_vs_moco.yaml", "--method", "moco",
               "--set", "data.dataset=digits", "--set", "defaults.encoder.params.widths=[4]",
               "--set", "defaults.encoder.params.convs_per_stage=1", "--batch", "8", "--steps", "2", "--rounds", "2"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("machine: ") and "\ncommand: " in out
    assert "method moco, batch 8," in out and "2 rounds x 2 steps per precision" in out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| precision")}
    assert list(rows) == ["fp32", "bf16"]
    for steps_per_s, _, median_ms, rounds in rows.values():
        times = [float(t) for t in rounds.split(",")]
        assert float(steps_per_s) > 0 and len(times) == 2
        assert abs(float(median_ms) - statistics.median(times)) <= 0.1  # as printed, to 0.1 ms
        assert abs(float(steps_per_s) - 1000 / float(median_ms)) <= 0.01 * float(steps_per_s)
    chosen = re.search(r"precision: auto chooses (\w+) here .*; the faster was (\w+): the rule (did NOT choose|chose) the faster", out)
    assert chosen is not None, out
    assert chosen[1] == fastest_precision(torch.device("cpu"))
    fp32_ms, bf16_ms = float(rows["fp32"][2]), float(rows["bf16"][2])
    if fp32_ms != bf16_ms:  # printed to 0.1 ms: equal ones cannot say which was faster
        assert chosen[2] == ("fp32" if fp32_ms < bf16_ms else "bf16")
    assert (chosen[3] == "chose") == (chosen[1] == chosen[2])
