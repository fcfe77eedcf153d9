"""N processes x batch B/N train as 1 process x batch B: every built-in method and loss.

SimSiam, Barlow Twins and VICReg run with their presets' optimizer settings (SimSiam's
predictor at a fixed lr under a cosine schedule, LARS with Barlow Twins' bias lr), so the
parameter groups are exercised across processes too; Barlow Twins' and VICReg's batch
statistics must be those of the global batch.

Two gloo processes on this CPU, each with half of every global batch, against one process
with the whole batch: the loss of every step, every parameter's gradient (after DDP's
averaging), the parameters after k optimizer steps, the MoCo queue and the NNCLR support set must agree to
1e-5 (float64, an encoder without BatchNorm, so the processes' batch statistics cannot
differ). The processes are started and joined by the test.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cmp.api.contracts import Encoder
from cmp.api.results import RunResult
from cmp.distributed import Processes, mean_across, shard
from cmp.engine.learner import Learner, OnlineNetwork, view_pairs
from cmp_plugins import losses
from cmp_plugins.contrastive_losses import moco_v3_infonce
from cmp_plugins.heads import mlp
from cmp_plugins.momentum import momentum
from cmp_plugins.negatives import in_batch, none
from cmp_plugins.optimizers import lars, sgd
from cmp_plugins.queue import queue
from cmp_plugins.redundancy_reduction import barlow_twins, vicreg
from cmp_plugins.regression_losses import negative_cosine
from cmp_plugins.schedules import cosine
from cmp_plugins.targets import nearest_neighbour, shared
from tests.helpers.processes import assert_same_loss_and_gradients, gloo_process, spawn_within

STEPS, BATCH, WORLD = 3, 16, 2

CASES: dict[str, dict[str, Any]] = {
    "simclr-nt_xent": {"target": "shared", "negatives": "in_batch", "loss": (losses.nt_xent, {"temperature": 0.2}), "pairs": "symmetric", "joint": True},
    "simclr-nt_logistic": {"target": "shared", "negatives": "in_batch", "loss": (losses.nt_logistic, {"temperature": 0.2}), "pairs": "symmetric", "joint": True},
    "simclr-nt_logistic-semi_hard": {"target": "shared", "negatives": "in_batch", "loss": (losses.nt_logistic, {"semi_hard": True}), "pairs": "symmetric", "joint": True},
    "simclr-margin_triplet": {"target": "shared", "negatives": "in_batch", "loss": (losses.margin_triplet, {"margin": 0.5}), "pairs": "symmetric", "joint": True},
    "simclr-margin_triplet-semi_hard": {"target": "shared", "negatives": "in_batch", "loss": (losses.margin_triplet, {"semi_hard": True}), "pairs": "symmetric", "joint": True},
    "moco-one_way": {"target": "momentum", "negatives": "queue", "loss": (losses.nt_xent, {"temperature": 0.2}), "pairs": "one_way", "joint": False},
    "moco-symmetric": {"target": "momentum", "negatives": "queue", "loss": (losses.nt_xent, {"temperature": 0.2}), "pairs": "symmetric", "joint": False},
    "moco-nt_logistic": {"target": "momentum", "negatives": "queue", "loss": (losses.nt_logistic, {}), "pairs": "one_way", "joint": False},
    "byol": {"target": "byol", "negatives": "none", "loss": (losses.cosine_regression, {}), "pairs": "symmetric", "joint": False},
    "simsiam": {"target": "simsiam", "negatives": "none", "loss": (negative_cosine, {}), "pairs": "symmetric", "joint": False,
                "optimizer": (sgd, {"lr": 0.5, "weight_decay": 1e-4, "exclude_bias_and_norm": False})},
    "barlow_twins": {"target": "shared", "negatives": "none", "loss": (barlow_twins, {}), "pairs": "one_way", "joint": False,
                     "optimizer": (lars, {"lr": 0.2, "bias_lr": 0.0048, "weight_decay": 1.5e-6, "lr_scaling": "none"})},
    "vicreg": {"target": "shared", "negatives": "none", "loss": (vicreg, {}), "pairs": "one_way", "joint": False,
               "optimizer": (lars, {"lr": 0.2, "weight_decay": 1e-6, "lr_scaling": "none"})},
    "moco_v3": {"target": "moco_v3", "negatives": "positive_view", "loss": (moco_v3_infonce, {"temperature": 0.2}), "pairs": "symmetric", "joint": False},
    "nnclr": {"target": "nnclr", "negatives": "anchor_view", "loss": (losses.nt_xent, {"temperature": 0.1, "query": "positive"}), "pairs": "symmetric", "joint": True},
}
PREDICTED = ("byol", "moco_v3", "nnclr")
"""Targets whose method has a predictor on the online branch."""


class LinearEncoder(Encoder):
    """Flatten then a linear map: no BatchNorm, so any split of the batch gives the same outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_dim = 12
        self.linear = nn.Linear(2 * 4 * 4, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x.flatten(1)))


def build(case: dict[str, Any]) -> Learner:
    torch.manual_seed(0)
    online = OnlineNetwork(LinearEncoder(), mlp(12, hidden_dim=16, out_dim=8, batch_norm=False))
    predictor = mlp(8, hidden_dim=16, out_dim=8, batch_norm=False) if case["target"] in PREDICTED else None
    if case["target"] == "simsiam":
        predictor = mlp(8, hidden_dim=4, out_dim=8, batch_norm=False, fixed_lr=True)
        target = shared(online, 8, stop_gradient=True)
    elif case["target"] == "shared":
        target = shared(online, 8)
    elif case["target"] == "nnclr":
        target = nearest_neighbour(online, 8, size=40)  # 3 steps of 16 rows: the third wraps
    elif case["target"] in ("byol", "moco_v3"):
        target = momentum(online, 8, momentum=0.9, schedule="cosine")
    else:
        target = momentum(online, 8, momentum=0.9, bn_shuffle_groups=2)
    negatives = {"in_batch": in_batch(8), "positive_view": in_batch(8, keys="positive_view"),
                 "anchor_view": in_batch(8, keys="anchor_view"), "queue": queue(8, size=40),
                 "none": none(8)}[case["negatives"]]
    loss_fn, params = case["loss"]
    return Learner(online, predictor, target, negatives, functools.partial(loss_fn, **params),
                   view_pairs(case["pairs"], 2, 2), case["joint"])


def batches() -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [([torch.randn(BATCH, 2, 4, 4, generator=g) for _ in range(2)], torch.randperm(100, generator=g)[:BATCH])
            for _ in range(STEPS)]


def train(case: dict[str, Any], processes: Processes) -> dict[str, Any]:
    """k steps; the loss (mean over processes), gradients, final parameters and queue."""
    learner = build(case)
    forward: Any = DistributedDataParallel(learner) if processes.distributed else learner
    if "optimizer" in case:
        factory, params = case["optimizer"]
        optimizer = factory(learner.param_groups(), BATCH, **params)
    else:
        optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    schedule = cosine(optimizer, STEPS, STEPS) if "optimizer" in case else None
    record: dict[str, Any] = {"loss": [], "grads": []}
    for step, (views, ids) in enumerate(batches()):
        mine = shard(BATCH, processes)
        out = forward([v[mine] for v in views], ids[mine])
        optimizer.zero_grad()
        out.loss.backward()
        record["loss"].append(mean_across(out.loss.detach(), processes).item())
        record["grads"].append({n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None})
        optimizer.step()
        if schedule is not None:
            schedule.step()
        learner.after_step(out.batch, (step + 1) / STEPS)
    record["params"] = {n: t.clone() for n, t in learner.state_dict().items()}
    return record


def worker(rank: int, port: int, out: str) -> None:
    torch.set_default_dtype(torch.float64)
    with gloo_process(rank, WORLD, port):
        processes = Processes(rank, WORLD, rank)
        torch.save({name: train(case, processes) for name, case in CASES.items()}, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ddp")
    spawn_within(worker, (str(out),), nprocs=WORLD, seconds=240)
    torch.set_default_dtype(torch.float64)
    try:
        single = {name: train(case, Processes()) for name, case in CASES.items()}
    finally:
        torch.set_default_dtype(torch.float32)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return {"single": single, "ranks": ranks}


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_with_half_batches_train_as_one_with_the_whole_batch(runs: dict[str, Any], name: str) -> None:
    single = runs["single"][name]
    for rank in runs["ranks"]:
        got = rank[name]
        assert_same_loss_and_gradients(got, single)
        for key, want in single["params"].items():
            torch.testing.assert_close(got["params"][key], want, atol=1e-5, rtol=0, msg=key)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("moco-")])
def test_the_queue_is_the_same_on_every_process_and_as_one_process_fills_it(runs: dict[str, Any], name: str) -> None:
    key = "negative_source.past_keys.entries"
    want = runs["single"][name]["params"][key]
    assert runs["single"][name]["params"]["negative_source.past_keys.filled"].item() == min(40, STEPS * BATCH * (2 if "symmetric" in name else 1))
    for rank in runs["ranks"]:
        assert torch.equal(rank[name]["params"][key], runs["ranks"][0][name]["params"][key])
        torch.testing.assert_close(rank[name]["params"][key], want, atol=1e-6, rtol=0)


def test_the_nnclr_support_set_is_the_same_on_every_process_and_as_one_process_fills_it(runs: dict[str, Any]) -> None:
    key = "target.support.memory.entries"
    want = runs["single"]["nnclr"]["params"]
    assert want["target.support.memory.filled"].item() == 40 and want["target.support.memory.pointer"].item() == 48 % 40
    for rank in runs["ranks"]:
        assert torch.equal(rank["nnclr"]["params"][key], runs["ranks"][0]["nnclr"]["params"][key])
        torch.testing.assert_close(rank["nnclr"]["params"][key], want[key], atol=1e-6, rtol=0)


RECIPE = """\
name: ddp
data: {dataset: digits, subset: 768}
train: {epochs: 3, batch_size: 64, seed: 0, threads: 1, log_every: 2, checkpoint_minutes: 0.00001}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
  optimizer: {name: sgd, params: {lr: 0.2}}
  augmentation: {name: simclr, params: {crop_scale: [0.6, 1.0]}}
methods:
  moco: {preset: moco, negative_source: {name: queue, params: {size: 256}}}
eval: {knn: {k: 20}}
baselines: []
"""


def cmp_run(recipe: Path, out: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CMP_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cmp", "run", str(recipe), "--out", str(out), "--reports", str(out / "reports"), *extra],
                          env=env, capture_output=True, text=True, timeout=timeout)


def only_result(out: Path) -> RunResult:
    (path,) = out.glob("ddp/*/result.json")
    return RunResult.from_json(path.read_text())


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("ddp_run")
    recipe = tmp / "ddp.yaml"
    recipe.write_text(RECIPE)
    done = cmp_run(recipe, tmp / "two", "--nproc", "2")
    assert done.returncode == 0, done.stderr
    return recipe, tmp / "two"


def test_a_two_process_run_writes_one_of_everything_and_matches_one_process(two_processes: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, out = two_processes
    (run_dir,) = [p for p in (out / "ddp").iterdir() if p.is_dir()]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.yaml", "result.json", "tensorboard"]
    writers = {p.name.split(".")[-2] for p in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1  # one process wrote TensorBoard events (the main one)
    two = only_result(out)
    assert two.ok and two.environment["processes"] == 2 and two.train is not None
    assert two.train.steps == 3 * (768 // 64) and two.train.images_seen == 3 * (768 // 64) * 64
    done = cmp_run(recipe, tmp_path / "one")
    assert done.returncode == 0, done.stderr
    one = only_result(tmp_path / "one")
    assert one.environment["processes"] == 1
    # Same global batch, other augmentation streams: equal within run-to-run noise.
    assert abs(two.metrics["knn_top1"] - one.metrics["knn_top1"]) < 0.05, (two.metrics, one.metrics)
    assert one.train is not None and abs(two.train.loss_per_epoch[-1] - one.train.loss_per_epoch[-1]) < 0.1
    # lr_scaling (linear, from MoCo's preset) uses the global batch: 0.2 * 64 / 256 on both
    assert two.train.effective_lr == one.train.effective_lr == pytest.approx(0.2 * 64 / 256)


def test_a_rerun_on_two_processes_finds_the_cell_cached_on_every_process(two_processes: tuple[Path, Path]) -> None:
    recipe, out = two_processes
    (path,) = out.glob("ddp/*/result.json")
    before = path.stat().st_mtime_ns
    done = cmp_run(recipe, out, "--nproc", "2")
    assert done.returncode == 0, done.stderr
    assert "cmp: moco: cached" in done.stderr and path.stat().st_mtime_ns == before


def rank_pids(launcher: int) -> dict[int, int]:
    """The worker processes below a launcher, by their RANK."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) != launcher:
                continue
            env = dict(line.split("=", 1) for line in (proc / "environ").read_text().split("\0") if "=" in line)
        except (OSError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(proc.name)
    return found


def test_killing_a_rank_stops_the_run_clearly_and_a_rerun_resumes_to_the_same_result(
    two_processes: tuple[Path, Path], tmp_path: Path
) -> None:
    recipe, straight_out = two_processes
    straight = only_result(straight_out)
    out = tmp_path / "killed"
    env = {**os.environ, "CMP_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "cmp", "run", str(recipe), "--out", str(out), "--reports", str(out / "reports"), "--nproc", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    killed_at = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and launcher.poll() is None:
            found = list(out.glob("ddp/*/checkpoint.pt"))
            if found:
                try:
                    step = int(torch.load(found[0], weights_only=True)["position"]["step"])
                except Exception:
                    step = 0
                if step >= 14:  # past the first epoch (12 steps), inside the second
                    pids = rank_pids(launcher.pid)
                    os.kill(pids[1], signal.SIGKILL)
                    killed_at = step
                    break
            time.sleep(0.05)
        _, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert killed_at is not None, "the run finished before a rank could be killed"
    assert launcher.returncode == 1
    (line,) = [line for line in err.splitlines() if line.startswith("cmp: error:")]
    assert "rank 1" in line and "killed by signal 9" in line and "the other ranks were stopped" in line
    # Rank 0 may record the cell as failed (its peer vanished mid-collective) before the
    # launcher stops it; nothing may claim the cell finished.
    assert all(not RunResult.from_json(p.read_text()).ok for p in out.glob("ddp/*/result.json"))
    assert not rank_pids(launcher.pid)

    done = cmp_run(recipe, out, "--nproc", "2")
    assert done.returncode == 0, done.stderr
    resumed = only_result(out)
    assert resumed.train is not None and straight.train is not None
    assert resumed.train.resumed_from_step is not None and resumed.train.resumed_from_step >= killed_at
    assert resumed.train.loss_per_epoch == straight.train.loss_per_epoch
    assert resumed.metrics == straight.metrics


def test_a_batch_that_does_not_divide_among_the_processes_fails_clearly(tmp_path: Path) -> None:
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(RECIPE.replace("batch_size: 64", "batch_size: 63").replace("epochs: 3", "epochs: 1"))
    done = cmp_run(recipe, tmp_path / "odd", "--nproc", "2")
    assert done.returncode == 1
    assert "train.batch_size: batch size 63 does not divide among 2 processes" in only_result(tmp_path / "odd").reason  # type: ignore[operator]


def test_nccl_on_a_machine_without_gpus_is_one_error_line(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: NCCL is available")
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(RECIPE.replace("threads: 1,", "threads: 1, backend: nccl,"))
    done = cmp_run(recipe, tmp_path / "nccl", "--nproc", "2")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("cmp: error:")]
    assert any("train.backend: NCCL needs CUDA GPUs and this machine has none" in line for line in errors), done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MASTER_ADDR": None}, "environment variable MASTER_ADDR expected, but not set"),
        ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9", "RANK": "1", "LOCAL_RANK": "1"}, "timed out"),
    ],
    ids=["no rendezvous address", "nobody at the rendezvous"],
)
def test_a_missing_rendezvous_is_one_error_line(tmp_path: Path, env: dict[str, str | None], message: str) -> None:
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(RECIPE)
    full = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "CMP_DIST_TIMEOUT_S": "2"}
    full.pop("MASTER_ADDR", None)
    full.update({k: v for k, v in env.items() if v is not None})
    done = subprocess.run([sys.executable, "-m", "cmp", "run", str(recipe), "--out", str(tmp_path / "runs")],
                          env=full, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("cmp: error: torch.distributed rendezvous: cannot join the other 1 process(es)") and message in line
