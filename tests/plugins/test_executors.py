"""Executors: a sweep through a local Ray cluster (num_cpus=2) gives the local executor's
results, keeps cached cells in the driver, records a failing cell alone, and resumes a
cell whose worker was killed. Every test starts and stops its own cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cmp.api.results import RunResult
from cmp.cli import main

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'cmp-compare[ray]'")

SWEEP = """\
name: sweep
data: {dataset: digits, subset: 384}
train: {epochs: 2, batch_size: 64, seed: 0, threads: 1, log_every: 2}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  augmentation: {name: simclr, params: {crop_scale: [0.6, 1.0]}}
methods:
  simclr: {preset: simclr}
  moco: {preset: moco, negative_source: {name: queue, params: {size: 128}}}
sweep: {train.seed: [0, 1]}
eval: {knn: {k: 20}}
baselines: []
"""


def results(out: Path, recipe: str = "sweep") -> dict[str, RunResult]:
    found = [RunResult.from_json(p.read_text()) for p in (out / recipe).glob("*/result.json")]
    return {r.cell: r for r in found}


def no_ray_left() -> bool:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return not any(line.startswith(("ray::", "/")) and ("raylet" in line or "gcs_server" in line) for line in listing.splitlines())


@pytest.fixture(autouse=True)
def _ray_stopped() -> object:
    yield
    if ray.is_initialized():
        ray.shutdown()
    deadline = time.monotonic() + 30
    while not no_ray_left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert no_ray_left(), "a Ray cluster was left running"


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, RunResult]]:
    tmp = tmp_path_factory.mktemp("local")
    recipe = tmp / "sweep.yaml"
    recipe.write_text(SWEEP)
    assert main(["run", str(recipe), "--out", str(tmp / "runs"), "--reports", str(tmp / "reports")]) == 0
    return recipe, results(tmp / "runs")


def test_a_ray_sweep_gives_the_local_results_and_a_rerun_starts_no_task(
    local_sweep: tuple[Path, dict[str, RunResult]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe, local = local_sweep
    args = ["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports"), "--executor", "ray"]
    assert main(args) == 0
    remote = results(tmp_path / "runs")
    assert len(remote) == 4 and remote.keys() == local.keys()
    for cell, result in remote.items():
        assert result.ok and result.metrics == local[cell].metrics, cell
        assert result.train is not None and result.train.loss_per_epoch == local[cell].train.loss_per_epoch  # type: ignore[union-attr]
    capsys.readouterr()

    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("a rerun of cached cells started Ray")

    monkeypatch.setattr(ray, "init", no_cluster)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count(": cached") == 4


def test_a_failing_cell_fails_alone_on_ray(tmp_path: Path) -> None:
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(SWEEP.replace("sweep: {train.seed: [0, 1]}", "sweep: {loss: [{name: nt_xent}, {name: crash_after, params: {calls: 2}}]}"))
    code = main(["-p", "tests.helpers.faulty_plugins", "run", str(recipe), "--out", str(tmp_path / "runs"),
                 "--reports", str(tmp_path / "reports"), "--executor", "ray"])
    assert code == 1
    found = results(tmp_path / "runs")
    failed = [r for r in found.values() if not r.ok]
    assert len(found) == 4 and len(failed) == 2
    assert all((r.reason or "").startswith("RuntimeError: boom inside the loss") for r in failed)
    assert all(r.config["parts"]["loss"]["name"] == "crash_after" for r in failed)
    report = (tmp_path / "reports" / "sweep" / "report.md").read_text()
    assert "## Failed cells" in report and "boom inside the loss" in report


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_the_driver_lacks_is_checked_on_the_node_each_cell_runs_on(tmp_path: Path) -> None:
    """`device: cuda` from a driver without GPUs is not refused before any task is placed;
    here no node has one either, so each CUDA cell fails alone naming train.device, and the
    CPU cells and the report are kept."""
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(SWEEP.replace("sweep: {train.seed: [0, 1]}", "sweep: {train.device: [cuda, cpu]}").replace(
        "  moco: {preset: moco, negative_source: {name: queue, params: {size: 128}}}\n", ""))
    code = main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports"), "--executor", "ray"])
    assert code == 1
    found = results(tmp_path / "runs")
    assert found["simclr[train.device=cpu]"].ok
    failed = found["simclr[train.device=cuda]"]
    assert not failed.ok and (failed.reason or "").startswith("train.device: 'cuda' asked for, but CUDA is not available on ")
    assert "CUDA is not available on" in (tmp_path / "reports" / "sweep" / "report.md").read_text()


def _kill_the_task_when_checkpointed(out: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        for checkpoint in out.glob("resume/*/checkpoint.pt"):
            listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            for line in listing.splitlines():
                pid, _, command = line.strip().partition(" ")
                if command.startswith("ray::_ray_task"):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            del checkpoint
        time.sleep(0.05)


def test_a_cell_whose_worker_is_killed_resumes_to_the_uninterrupted_result(
    local_sweep: tuple[Path, dict[str, RunResult]], tmp_path: Path
) -> None:
    text = SWEEP.replace("name: sweep", "name: resume").replace("sweep: {train.seed: [0, 1]}\n", "").replace(
        "  moco: {preset: moco, negative_source: {name: queue, params: {size: 128}}}\n", "").replace(
        "log_every: 2}", "log_every: 2, checkpoint_minutes: 0.00001}").replace("epochs: 2", "epochs: 4")
    recipe = tmp_path / "resume.yaml"
    recipe.write_text(text)
    straight_out = tmp_path / "straight"
    assert main(["run", str(recipe), "--out", str(straight_out), "--reports", str(tmp_path / "r1")]) == 0
    (straight,) = results(straight_out, "resume").values()

    out = tmp_path / "killed"
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_the_task_when_checkpointed, args=(out, killed))
    watcher.start()
    code = main(["run", str(recipe), "--out", str(out), "--reports", str(tmp_path / "r2"), "--executor", "ray"])
    watcher.join()
    assert killed, "the cell finished before its worker could be killed"
    assert code == 1
    (failed,) = results(out, "resume").values()
    assert not failed.ok and "the Ray task failed" in (failed.reason or "")

    assert main(["run", str(recipe), "--out", str(out), "--reports", str(tmp_path / "r2"), "--executor", "ray"]) == 0
    (resumed,) = results(out, "resume").values()
    assert resumed.ok and resumed.train is not None and straight.train is not None
    assert resumed.train.resumed_from_step is not None and resumed.train.resumed_from_step > 0
    assert resumed.train.loss_per_epoch == straight.train.loss_per_epoch
    assert resumed.metrics == straight.metrics


def test_without_ray_the_executor_is_one_line_saying_how_to_install_it(tmp_path: Path) -> None:
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(SWEEP)
    blocked = "import sys; sys.modules['ray'] = None; from cmp.cli import main; raise SystemExit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", blocked, "run", str(recipe), "--out", str(tmp_path / "runs"), "--executor", "ray"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "CMP_PROGRESS": "0"})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == "cmp: error: --executor ray: the ray executor needs Ray, which is not installed: pip install 'cmp-compare[ray]'"


def test_a_cell_given_two_processes_trains_with_ddp_inside_its_ray_task(tmp_path: Path) -> None:
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(SWEEP.replace("sweep: {train.seed: [0, 1]}\n", "").replace(
        "  moco: {preset: moco, negative_source: {name: queue, params: {size: 128}}}\n", ""))
    args = ["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports"),
            "--executor", "ray", "--cpus-per-cell", "2", "--set", "executor.params.processes_per_cell=2"]
    assert main(args) == 0
    (result,) = results(tmp_path / "runs").values()
    assert result.ok and result.environment["processes"] == 2
    assert result.train is not None and result.train.steps == 2 * (384 // 64)


def _interruptible() -> None:
    """Ctrl-C as a terminal gives it, even when the tests run where SIGINT is ignored
    (a background job of a shell), which Python would otherwise pass on to the driver."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_the_driver_cancels_the_cells_and_keeps_the_finished_ones(tmp_path: Path) -> None:
    recipe = tmp_path / "sweep.yaml"
    # 100 epochs, about 3 s a cell here: long beside Ctrl-C's way to the tasks, which at 2
    # epochs (0.1 s, the rest is starting Ray's workers) all four cells could outrun
    recipe.write_text(SWEEP.replace("sweep: {train.seed: [0, 1]}", "sweep: {train.seed: [0, 1, 2, 3]}").replace(
        "  moco: {preset: moco, negative_source: {name: queue, params: {size: 128}}}\n", "").replace("epochs: 2", "epochs: 100"))
    out = tmp_path / "runs"
    driver = subprocess.Popen(
        [sys.executable, "-m", "cmp", "run", str(recipe), "--out", str(out), "--reports", str(tmp_path / "reports"), "--executor", "ray"],
        env={**os.environ, "CMP_PROGRESS": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=_interruptible,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and driver.poll() is None and not list(out.glob("sweep/*/result.json")):
            time.sleep(0.1)
        assert driver.poll() is None, "the sweep finished before it could be interrupted"
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert "interrupted; finished cells are kept" in err
    finished = results(out)
    assert finished and all(r.ok for r in finished.values())
    assert len(finished) < 4
