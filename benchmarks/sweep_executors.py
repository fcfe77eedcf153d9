"""Wall time of a 12-cell sweep with the local executor (`--jobs 1`, `--jobs 2`) and with Ray
(a local cluster started for the run, one CPU per cell), each into a fresh runs directory.

The sweep is SimCLR and MoCo x 3 seeds x 2 batch sizes on 1 200 digits images, 3 epochs
each, a small convnet: cells of a few seconds, so the figures show each executor's own
overhead (process start-up, Ray's cluster start) as much as the parallelism.

    python -m benchmarks.sweep_executors
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe_machine

RECIPE = """\
name: sweep_bench
data: {dataset: digits, subset: 1200}
train: {epochs: 3, batch_size: 64, seed: 0, threads: 1}
defaults:
  encoder: {name: convnet, params: {widths: [16, 32]}}
  projection_head: {name: mlp, params: {hidden_dim: 64, out_dim: 32}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  augmentation: {name: simclr, params: {crop_scale: [0.6, 1.0]}}
methods:
  simclr: {preset: simclr}
  moco: {preset: moco, negative_source: {name: queue, params: {size: 256}}}
sweep: {train.seed: [0, 1, 2], train.batch_size: [64, 128]}
eval: {knn: {k: 20}}
baselines: []
"""


def timed_run(recipe: Path, out: Path, *flags: str) -> float:
    env = {**os.environ, "CMP_PROGRESS": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cmp", "run", str(recipe), "--out", str(out / "runs"),
                           "--reports", str(out / "reports"), *flags], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cmp run {' '.join(flags)} failed:\n{done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-ray", action="store_true", help="only the local executor")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cmp-sweep-bench-"))
    recipe = work / "sweep_bench.yaml"
    recipe.write_text(RECIPE)
    rows = [("local, --jobs 1", timed_run(recipe, work / "jobs1")), ("local, --jobs 2", timed_run(recipe, work / "jobs2", "--jobs", "2"))]
    if not args.skip_ray:
        rows.append(("ray (local cluster, 1 CPU per cell)", timed_run(recipe, work / "ray", "--executor", "ray")))
    rerun = timed_run(recipe, work / "jobs1")
    print(describe_machine())
    print("12 cells (SimCLR, MoCo x seeds 0-2 x batch 64, 128; digits 1 200 images, 3 epochs), whole `cmp run`:")
    print("| executor | wall time (s) |")
    print("|---|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} |")
    print(f"| rerun, every cell cached | {rerun:.1f} |")


if __name__ == "__main__":
    main()
