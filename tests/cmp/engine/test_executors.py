"""Executors of the engine: a cell trained by several processes together ends all of
them when it is interrupted (Ctrl-C, or a Ray cancel, which raises KeyboardInterrupt in
the task), instead of leaving them training on their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RECIPE = """\
name: long
data: {dataset: digits, subset: 256}
train: {epochs: 2000, batch_size: 64, seed: 0, threads: 1, log_every: 1000}
methods:
  simclr:
    preset: simclr
    encoder: {name: convnet, params: {widths: [8, 16]}}
    projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
    optimizer: {name: sgd, params: {lr: 0.1}}
eval: {knn: {k: 20}}
baselines: []
"""

DRIVER = """\
import sys
from pathlib import Path
from cmp.api.loader import load_plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.engine.executors import run_cell_on_processes

(cell,) = resolve(load_recipe(Path(sys.argv[1])), load_plugins(None).registry)
run_cell_on_processes(None, [], Path(sys.argv[2]), cell, processes=2, threads=1)
"""


def children(pid: int) -> set[int]:
    listing = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in listing.split()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_an_interrupted_two_process_cell_ends_both_processes(tmp_path: Path) -> None:
    recipe = tmp_path / "long.yaml"
    recipe.write_text(RECIPE)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(recipe), str(tmp_path / "runs")],
        env={**os.environ, "CMP_PROGRESS": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        ranks: set[int] = set()
        while time.monotonic() < deadline and driver.poll() is None:
            ranks = {p for p in children(driver.pid) if Path(f"/proc/{p}/cmdline").read_bytes().count(b"spawn_main")}
            if len(ranks) == 2 and list((tmp_path / "runs").rglob("events.out.tfevents*")):
                break
            time.sleep(0.2)
        assert driver.poll() is None and len(ranks) == 2, "the two processes never started training"
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert "KeyboardInterrupt" in err
    deadline = time.monotonic() + 30
    while any(alive(p) for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in ranks), "a process of the interrupted cell kept running"
    assert not list((tmp_path / "runs").rglob("result.json"))
