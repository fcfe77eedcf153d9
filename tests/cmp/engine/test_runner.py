"""Runs: a killed cell resumes to the same result, a NaN cell fails alone, a cached cell is kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmp.cli import main
from cmp.engine.checkpoint import load_checkpoint
from cmp.engine.trainer import Trainer

RESUMABLE = """\
name: resumable
data: {dataset: digits}
train: {epochs: 3, batch_size: 64, seed: 3, threads: 1, log_every: 5, checkpoint_minutes: 0.00001}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  augmentation: {name: simclr, params: {crop_scale: [0.5, 1.0]}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
methods:
  moco:
    preset: moco
    target: {name: momentum, params: {bn_shuffle_groups: 2}}
    negative_source: {name: queue, params: {size: 100}}
eval: {knn: {k: 20}}
baselines: []
"""


def result_of(out: Path) -> dict:  # type: ignore[type-arg]
    (path,) = out.glob("resumable/*/result.json")
    return json.loads(path.read_text())


def test_a_killed_cell_resumes_to_the_result_of_an_uninterrupted_run(tmp_path: Path) -> None:
    recipe = tmp_path / "resumable.yaml"
    recipe.write_text(RESUMABLE)
    assert main(["run", str(recipe), "--out", str(tmp_path / "straight"), "--reports", str(tmp_path / "r1")]) == 0
    straight = result_of(tmp_path / "straight")

    out = tmp_path / "killed"
    env = {**os.environ, "CMP_PROGRESS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmp", "run", str(recipe), "--out", str(out), "--reports", str(tmp_path / "r2")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    killed_at = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("resumable/*/checkpoint.pt"))
        if found:
            step = int(load_checkpoint(found[0])["position"]["step"])
            if step >= 25:  # past the first epoch (22 steps), in the middle of the second
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed"
    assert not list(out.glob("resumable/*/result.json"))

    assert main(["run", str(recipe), "--out", str(out), "--reports", str(tmp_path / "r2")]) == 0
    resumed = result_of(out)
    assert resumed["train"]["resumed_from_step"] >= killed_at
    assert resumed["train"]["loss_per_epoch"] == straight["train"]["loss_per_epoch"]
    assert resumed["metrics"] == straight["metrics"]


def test_a_nan_cell_fails_alone_and_a_cached_cell_is_not_retrained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tmp_path / "mixed.yaml"
    recipe.write_text(
        RESUMABLE.replace("name: resumable", "name: mixed").replace("epochs: 3", "epochs: 1")
        + "sweep: {loss.name: [nt_xent, nan_after]}\n"
    )
    args = ["-p", "tests.helpers.faulty_plugins", "run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]
    assert main(args) == 1
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "mixed").glob("*/result.json")]
    status = {r["config"]["parts"]["loss"]["name"]: r for r in results}
    assert status["nt_xent"]["status"] == "ok"
    alone = tmp_path / "alone.yaml"
    alone.write_text(recipe.read_text().replace("[nt_xent, nan_after]", "[nt_xent]"))
    assert main(["run", str(alone), "--out", str(tmp_path / "alone"), "--reports", str(tmp_path / "alone_reports")]) == 0
    (by_itself,) = [json.loads(p.read_text()) for p in (tmp_path / "alone" / "mixed").glob("*/result.json")]
    # a failing neighbour changes nothing: CPU runs are deterministic, so the same cell run
    # alone has the same key, losses and metrics
    assert by_itself["key"] == status["nt_xent"]["key"]
    assert by_itself["train"]["loss_per_epoch"] == status["nt_xent"]["train"]["loss_per_epoch"]
    assert by_itself["metrics"] == status["nt_xent"]["metrics"] and set(by_itself["metrics"]) == {"knn_top1"}
    assert status["nan_after"]["status"] == "failed"
    assert "loss became nan at step 5" in status["nan_after"]["reason"]
    report = (tmp_path / "reports" / "mixed" / "report.md").read_text()
    assert "## Failed cells" in report and "loss became nan" in report
    capsys.readouterr()

    def no_training(self: Trainer, *args: object, **kwargs: object) -> None:
        raise AssertionError("a cached cell was trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    ok_only = recipe.read_text().replace("[nt_xent, nan_after]", "[nt_xent]")
    recipe.write_text(ok_only)
    assert main(args) == 0
    assert "cached" in capsys.readouterr().out


def test_dry_run_lists_cells_and_what_is_cached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "dry.yaml"
    recipe.write_text(RESUMABLE.replace("name: resumable", "name: dry") + "sweep: {train.seed: [0, 1]}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "moco[train.seed=0]" in out and "moco[train.seed=1]" in out and out.count("train") >= 2
    assert not (tmp_path / "runs").exists()


def test_jobs_run_cells_in_parallel_processes(tmp_path: Path) -> None:
    recipe = tmp_path / "jobs.yaml"
    recipe.write_text(RESUMABLE.replace("name: resumable", "name: jobs").replace("epochs: 3", "epochs: 1") + "sweep: {train.seed: [0, 1]}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "rep"), "--jobs", "2"]) == 0
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "jobs").glob("*/result.json")]
    assert sorted(r["config"]["train"]["seed"] for r in results) == [0, 1]
    assert all(r["status"] == "ok" for r in results)


def test_the_runner_loads_each_data_section_once_whatever_its_key_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    import cmp.engine.runner as runner_module
    from cmp.api.loader import load_plugins
    from cmp.config.recipe import DataSection

    loaded: list[DataSection] = []
    monkeypatch.setattr(runner_module, "load_data", lambda data, registry: loaded.append(data) or object())
    runner = runner_module.Runner(load_plugins("none"), tmp_path)
    first = runner.data_for(DataSection(dataset="digits", params={"x": 1, "y": 2}))
    assert runner.data_for(DataSection(dataset="digits", params={"y": 2, "x": 1})) is first
    # a YAML date in a plugin's params is a value too (safe_load makes it a datetime.date)
    dated = runner.data_for(DataSection(dataset="digits", subset=10, params={"when": datetime.date(2026, 11, 27)}))
    assert dated is not first and len(loaded) == 2 and loaded[1].subset == 10


def test_a_process_other_than_the_main_one_says_nothing_and_calls_no_lifecycle_plugin(tmp_path: Path) -> None:
    """One progress display and one TensorBoard run per run: only rank 0 echoes and calls
    the lifecycle hooks, whatever plugins are loaded."""
    from cmp.api.loader import load_plugins
    from cmp.distributed import Processes
    from cmp.engine.runner import Runner

    plugins = load_plugins("none")
    said: list[str] = []
    main_process = Runner(plugins, tmp_path, echo=said.append, processes=Processes(rank=0, world_size=2))
    other = Runner(plugins, tmp_path, echo=said.append, processes=Processes(rank=1, world_size=2))
    other.echo("from rank 1")
    main_process.echo("from rank 0")
    assert said == ["from rank 0"]
    assert main_process.hooks is plugins.hook
    assert other.hooks.cmp_run_end(run=None, result=None) == []
    assert other.hooks is not plugins.hook


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cell_whose_device_is_not_on_the_machine_running_it_fails_alone_naming_train_device(tmp_path: Path) -> None:
    """The check a Ray worker makes: one clear reason naming `train.device` and the
    machine, recorded as the cell's result, while the next cell trains as before."""
    import dataclasses
    import socket

    from cmp.api.loader import load_plugins
    from cmp.config.cells import resolve
    from cmp.config.recipe import load_recipe
    from cmp.engine.runner import Runner

    recipe = tmp_path / "resumable.yaml"
    recipe.write_text(RESUMABLE.replace("epochs: 3", "epochs: 1").replace("checkpoint_minutes: 0.00001", "device: cpu"))
    plugins = load_plugins("none")
    (on_cpu,) = resolve(load_recipe(recipe), plugins.registry)
    on_cuda = dataclasses.replace(on_cpu, train=on_cpu.train.model_copy(update={"device": "cuda"}))
    runner = Runner(plugins, tmp_path / "runs")
    failed, trained = runner.run_cell(on_cuda), runner.run_cell(on_cpu)
    assert failed.status == "failed"
    assert failed.reason == f"train.device: 'cuda' asked for, but CUDA is not available on {socket.gethostname()}"
    assert trained.ok and trained.key != failed.key
    assert runner.run_dir(on_cuda).cached() is None  # tried again on the next run, perhaps on another machine
