"""The shard-reading benchmark runs end to end at a tiny size: every reader read the same
samples (the script checks that itself) and has its row; speeds mean nothing on CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_reader_has_a_row_with_a_rate_and_the_index_times_are_printed() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.shard_reading", "--images", "30", "--rounds", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in done.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| reader")}
    assert list(rows) == ["webdataset.WebDataset, shard order", "cmp index, shard order",
                          "cmp index, random permutation (training)"]
    for rate, _, rounds in rows.values():
        assert float(rate.replace(",", "")) > 0 and len(rounds.split(",")) == 2
    assert "30 JPEGs (200-500 px) in 1 shard," in done.stdout and "index: first pass over the tar headers" in done.stdout
