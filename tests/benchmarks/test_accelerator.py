"""The accelerator benchmark runs end to end at smoke-test sizes and prints its whole table.

It checks that the script works (every row there, every value a number or a reason why
not), not how fast anything is: figures from a CI machine mean nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.accelerator import METHOD_NAMES, MODES

ROOT = Path(__file__).resolve().parents[2]
MAY_SKIP = ("fp16 + GradScaler", "bf16 + channels_last + compile")
"""Modes `--quick` may leave out on a CPU (emulated fp16, minutes of compiling), saying why."""


def table(stdout: str) -> dict[tuple[str, str], str]:
    """(measurement, setting) -> value of every row of the printed Markdown table."""
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("| measurement")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]
    return {(c[0], c[1]): c[2] for c in cells}


def is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def test_quick_run_prints_every_row_with_a_value() -> None:
    env = {**os.environ, "CMP_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.accelerator", "--quick", "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: ") and "command: " in done.stdout
    rows = table(done.stdout)
    throughput = {setting: value for (what, setting), value in rows.items() if what == "training images/s"}
    assert len(throughput) == 2 * len(METHOD_NAMES) * len(MODES)
    for method in METHOD_NAMES.values():
        for encoder in ("convnet", "resnet18 (CIFAR stem)"):
            for mode in MODES:
                (value,) = [v for s, v in throughput.items()
                            if s.startswith(f"{method}, {encoder},") and s.endswith(f", {mode.label}")]
                if mode.label in MAY_SKIP and value.startswith("skipped ("):
                    continue
                if mode.precision == "bf16" and encoder != "convnet" and value.startswith("skipped (--quick on a CPU without bf16"):
                    continue  # emulated bf16 takes seconds a step there; the convnet rows measure it
                assert is_number(value) and float(value.replace(",", "")) > 0, (method, encoder, mode.label, value)
    assert any(is_number(v) for s, v in throughput.items() if s.endswith(", fp16 + GradScaler")), "fp16 measured nowhere"
    others = {what: [v for (w, _), v in rows.items() if w == what] for what in {w for w, _ in rows}}
    assert len(others["engine step / bare loop"]) == 3
    assert len(others["augmentation: batched / per-sample speed"]) == 2
    assert len(others["kNN evaluation: FAISS CPU time / torch time"]) == 1
    assert len(others["streaming: decoded on the device / in workers"]) == 1
    for what in ("engine step / bare loop", "augmentation: batched / per-sample speed",
                 "kNN evaluation: FAISS CPU time / torch time", "streaming: decoded on the device / in workers"):
        assert all(is_number(v) and float(v) > 0 for v in others[what]), (what, others[what])
    (lightly,) = others["lightly epoch time / cmp epoch time"]
    if importlib.util.find_spec("lightly") is not None:
        assert is_number(lightly) and float(lightly) > 0, lightly
    else:
        assert lightly.startswith("skipped (lightly is not installed")
