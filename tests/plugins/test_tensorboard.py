"""Each cell is a TensorBoard run: loss, learning rate, kNN top-1, tau, queue fill, hparams."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import plugins.tensorboard as tensorboard
from cmp.api.results import MetricInfo, RunInfo, RunResult
from cmp.cli import main

RECIPE = """\
name: logged
data: {dataset: digits}
train: {epochs: 2, batch_size: 64, seed: 0, log_every: 5, eval_every: 1}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
methods:
  moco: {preset: moco, negative_source: {name: queue, params: {size: 1024}}}
eval: {knn: {k: 20}}
baselines: []
"""


def test_a_cell_logs_its_scalars_and_hyper_parameters(tmp_path: Path) -> None:
    recipe = tmp_path / "logged.yaml"
    recipe.write_text(RECIPE)
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 0
    (events_dir,) = tmp_path.glob("runs/logged/*/tensorboard")
    events = EventAccumulator(str(events_dir))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/momentum", "train/queue_fill", "eval/knn_top1", "epoch/loss"} <= scalars
    fill = [e.value for e in events.Scalars("train/queue_fill")]
    assert fill[0] < 1.0 and fill[-1] == 1.0  # the queue fills up: 1024 keys, 64 per step
    assert [e.step for e in events.Scalars("eval/knn_top1")] == [1, 2]
    assert "hparam/knn_top1" in scalars  # add_hparams: final metrics against the config
    assert events.summary_metadata["_hparams_/session_start_info"].plugin_data.plugin_name == "hparams"


def test_an_evaluator_plugins_metric_is_logged_like_knns(tmp_path: Path) -> None:
    """`probe_auc`, from an evaluator cmp does not know, is an eval scalar and an hparams metric."""
    config = {"train": {"epochs": 2, "batch_size": 64}, "eval": {"probe": {"name": "probe", "params": {}}}}
    run = RunInfo(name="probed", recipe="r", method="simclr", key="k", dir=tmp_path, config=config, device="cpu")
    tensorboard.cmp_run_start(run)
    for epoch, auc in ((1, 0.8), (2, 0.9)):
        tensorboard.cmp_evaluation_done(run, epoch, {"probe_auc": auc})
    result = RunResult(recipe="r", method="simclr", cell="probed", key="k", status="ok", config=config,
                       metrics={"probe_auc": 0.9}, metric_info={"probe_auc": MetricInfo("probe AUC")})
    tensorboard.cmp_run_end(run, result)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("eval/probe_auc")] == [(1, 0.8), (2, 0.9)]
    assert "hparam/probe_auc" in events.Tags()["scalars"]
