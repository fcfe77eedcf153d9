"""Failure paths of a run: each failure is named, recorded, and loses nothing else.

Every run here is a few steps on scikit-learn's digits with a tiny encoder.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from cmp.api.results import BaselineResult, RunResult
from cmp.cli import main
from cmp.engine.checkpoint import save_checkpoint

TINY = """\
name: tiny
data: {dataset: digits, subset: 512}
train: {epochs: 1, batch_size: 64, seed: 0, threads: 1, log_every: 2}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  augmentation: {name: simclr, params: {crop_scale: [0.6, 1.0]}}
methods:
  simclr: {preset: simclr}
eval: {knn: {k: 20}}
baselines: []
"""

FAULTY = ["-p", "tests.helpers.faulty_plugins"]


def run(tmp_path: Path, text: str, *extra: str) -> int:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(text)
    return main([*extra[:2], "run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports"), *extra[2:]])


def results(tmp_path: Path) -> list[RunResult]:
    return [RunResult.from_json(p.read_text()) for p in sorted((tmp_path / "runs" / "tiny").glob("*/result.json"))]


def by_sweep(tmp_path: Path, key: str) -> dict[str, RunResult]:
    return {str(r.sweep[key]): r for r in results(tmp_path)}


def test_a_factory_that_raises_fails_its_cell_named_and_the_others_finish(tmp_path: Path) -> None:
    assert run(tmp_path, TINY + "sweep: {encoder.name: [convnet, broken_encoder]}\n", *FAULTY) == 1
    cells = by_sweep(tmp_path, "encoder.name")
    assert cells["convnet"].ok and set(cells["convnet"].metrics) == {"knn_top1"}
    broken = cells["broken_encoder"]
    assert broken.status == "failed" and broken.metrics == {}
    assert "building encoder 'broken_encoder' failed: ValueError: cannot build a 8-wide encoder" in (broken.reason or "")
    assert "tests.helpers.faulty_plugins" in (broken.reason or "")


def test_a_crash_mid_training_writes_error_txt_and_the_others_finish(tmp_path: Path) -> None:
    sweep = "sweep: {loss: [{name: nt_xent}, {name: crash_after, params: {calls: 3}}]}\n"
    assert run(tmp_path, TINY + sweep, *FAULTY) == 1
    cells = {r.config["parts"]["loss"]["name"]: r for r in results(tmp_path)}
    assert cells["nt_xent"].ok
    crashed = cells["crash_after"]
    assert crashed.status == "failed" and (crashed.reason or "").startswith("RuntimeError: boom inside the loss (traceback in ")
    error = Path((crashed.reason or "").split("traceback in ")[1].rstrip(")"))
    assert error.name == "error.txt" and "raise RuntimeError(\"boom inside the loss\")" in error.read_text()


def test_a_batch_larger_than_the_data_fails_naming_the_key(tmp_path: Path) -> None:
    assert run(tmp_path, TINY.replace("batch_size: 64", "batch_size: 1024")) == 1
    (cell,) = results(tmp_path)
    assert cell.reason == "train.batch_size: batch size 1024 is larger than the 512 training images"


def test_the_collapse_guard_stops_a_collapsed_run(tmp_path: Path) -> None:
    text = TINY.replace("log_every: 2", "log_every: 1").replace("simclr: {preset: simclr}", "simclr: {preset: simclr, projection_head: constant}")
    assert run(tmp_path, text, *FAULTY) == 1
    (cell,) = results(tmp_path)
    assert (cell.reason or "").startswith("representation collapsed at step 1: embedding std 0.00e+00 < 0.0001")


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("bad_labels", "test labels must lie in [0, 10)"), ("float_images", "train images must be uint8 (N, C, H, W), got torch.float32 (1438, 1, 8, 8)")],
)
def test_a_data_set_plugin_returning_bad_data_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str, message: str
) -> None:
    assert run(tmp_path, TINY.replace("dataset: digits", f"dataset: {dataset}"), *FAULTY) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cmp: error: dataset '{dataset}' from unpackaged (plugin 'tests.helpers.faulty_plugins'): ")
    assert line.endswith(message)
    assert not (tmp_path / "runs" / "tiny").exists()


def test_a_lifecycle_plugin_failing_at_run_end_loses_no_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, TINY, "-p", "tests.helpers.failing_run_end") == 0
    (cell,) = results(tmp_path)
    assert cell.ok and "knn_top1" in cell.metrics
    assert "cmp: warning: a plugin failed at run end: OSError: the experiment tracker is unreachable" in capsys.readouterr().err


def test_lifecycle_plugins_learn_the_cell_and_its_result_records_device_time_and_processes(tmp_path: Path) -> None:
    from tests.helpers import recording_lifecycle

    recording_lifecycle.SEEN.clear()
    started = time.perf_counter()
    assert run(tmp_path, TINY, "-p", "tests.helpers.recording_lifecycle") == 0
    elapsed = time.perf_counter() - started
    (cell,) = results(tmp_path)
    (start, start_run, _), (end, end_run, seen_result) = recording_lifecycle.SEEN
    assert (start, end) == ("start", "end") and start_run is end_run
    assert (end_run.name, end_run.recipe, end_run.method, end_run.key) == (cell.cell, "tiny", "simclr", cell.key)
    assert end_run.config == cell.config and end_run.dir.name == f"simclr-{cell.key}"
    assert seen_result == cell
    assert cell.device == "cpu" and cell.environment["processes"] == 1
    assert 0 < cell.wall_time_s < elapsed


def test_an_unreadable_checkpoint_is_set_aside_and_the_cell_trains_from_scratch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, TINY) == 0
    (first,) = results(tmp_path)
    run_dir = next((tmp_path / "runs" / "tiny").glob("simclr-*"))
    (run_dir / "result.json").unlink()
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    capsys.readouterr()

    assert main(["run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert "unreadable checkpoint" in capsys.readouterr().out

    assert run(tmp_path, TINY) == 0
    err = capsys.readouterr().err
    aside = run_dir / "checkpoint.pt.unreadable-1"
    assert aside.read_bytes() == b"not a checkpoint at all"
    assert f"set it aside as {aside}" in err and "weights_only" not in err
    (second,) = results(tmp_path)
    assert second.ok and second.train is not None and second.train.resumed_from_step is None
    assert second.metrics == first.metrics  # from scratch, deterministic on the CPU

    assert run(tmp_path, TINY) == 0  # the rerun is cached: no further file set aside
    assert not (run_dir / "checkpoint.pt.unreadable-2").exists()


def test_a_cell_with_a_checkpoint_and_no_result_resumes_from_it_to_the_same_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (the killed-subprocess test is the end-to-end one): the checkpoint is read and used."""
    text = TINY.replace("log_every: 2}", "log_every: 2, checkpoint_minutes: 0.00001}")
    assert run(tmp_path, text) == 0
    (first,) = results(tmp_path)
    run_dir = next((tmp_path / "runs" / "tiny").glob("simclr-*"))
    assert (run_dir / "checkpoint.pt").is_file()
    (run_dir / "result.json").unlink()
    assert run(tmp_path, text) == 0
    (second,) = results(tmp_path)
    assert first.train is not None and second.train is not None
    assert first.train.resumed_from_step is None and second.train.resumed_from_step == first.train.steps
    assert second.metrics == first.metrics and second.train.loss_per_epoch == first.train.loss_per_epoch


def test_a_checkpoint_of_another_configuration_is_set_aside_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir_parent = tmp_path / "runs" / "tiny"
    assert run(tmp_path, TINY) == 0
    run_dir = next(run_dir_parent.glob("simclr-*"))
    (run_dir / "result.json").unlink()
    save_checkpoint(run_dir / "checkpoint.pt", {"key": "someoneelse"})
    assert run(tmp_path, TINY) == 0
    assert (run_dir / "checkpoint.pt.unreadable-1").is_file()
    assert "belongs to configuration someoneelse" in capsys.readouterr().err


def test_raw_pixel_baseline_equals_knn_on_normalised_pixels(tmp_path: Path) -> None:
    from cmp.api.contracts import Features
    from cmp.api.loader import load_plugins
    from cmp.config.recipe import DataSection
    from cmp.engine.data import load_data
    from cmp_plugins.evaluators import knn

    assert run(tmp_path, TINY.replace("baselines: []", "baselines: [raw_pixels]")) == 0
    (path,) = (tmp_path / "runs" / "baselines").glob("raw_pixels-*.json")
    baseline = BaselineResult.from_json(path.read_text())
    data = load_data(DataSection(dataset="digits", subset=512), load_plugins("none").registry)
    info = data.info()
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return ((x.double() / 255 - mean) / std).flatten(1).float()

    train = Features(pixels(data.train_images), data.train_labels, 10)
    test = Features(pixels(data.test_images), data.test_labels, 10)
    want = knn(k=20)(train, test)["top1"]
    assert baseline.metrics["knn_top1"] == pytest.approx(want, abs=1e-12)


def test_supervised_baseline_trains_through_the_trainer_and_beats_random_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmp.engine.trainer import Trainer

    fits: list[int] = []
    real_fit = Trainer.fit

    def counted(self: Trainer, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        fits.append(self.total_steps)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", counted)
    text = TINY.replace("epochs: 1", "epochs: 8").replace("lr: 0.1", "lr: 0.3").replace("baselines: []", "baselines: [random_init, supervised]")
    assert run(tmp_path, text) == 0
    found = {p.name.split("-")[0]: BaselineResult.from_json(p.read_text()) for p in (tmp_path / "runs" / "baselines").glob("*.json")}
    assert found["supervised"].metrics["knn_top1"] > found["random_init"].metrics["knn_top1"] + 0.02
    assert fits == [8 * (512 // 64), 8 * (512 // 64)]  # the cell, then the supervised baseline, same budget


def test_two_spellings_of_one_learning_rate_share_one_supervised_baseline(tmp_path: Path) -> None:
    text = TINY.replace("baselines: []", "baselines: [supervised]").replace(
        "methods:\n  simclr: {preset: simclr}",
        "methods:\n  a: {preset: simclr, optimizer: {name: sgd, params: {lr: 0.1, lr_scaling: none}}}\n"
        "  b: {preset: simclr, optimizer: {name: sgd, params: {lr: 0.4, lr_scaling: linear}}}",
    ).replace("batch_size: 64", "batch_size: 64")
    assert run(tmp_path, text) == 0
    assert len(list((tmp_path / "runs" / "baselines").glob("supervised-*.json"))) == 1


@pytest.mark.parametrize(
    ("precision", "channels_last"), [("bf16", False), ("fp16", False), ("fp32", True), ("bf16", True)]
)
def test_precision_and_layout_paths_train_on_the_cpu(tmp_path: Path, precision: str, channels_last: bool) -> None:
    settings = f"precision: {precision}, channels_last: {str(channels_last).lower()}"
    text = TINY.replace("log_every: 2", f"log_every: 2, {settings}").replace("baselines: []", "baselines: [supervised]")
    assert run(tmp_path, text) == 0
    (cell,) = results(tmp_path)
    assert cell.ok and cell.train is not None and cell.train.steps == 512 // 64
    assert cell.config["train"]["precision"] == precision and cell.config["train"]["channels_last"] is channels_last
    assert all(0 < loss < 10 for loss in cell.train.loss_per_epoch)
    (baseline,) = (tmp_path / "runs" / "baselines").glob("supervised-*.json")
    assert BaselineResult.from_json(baseline.read_text()).ok


def test_the_loss_ablations_two_methods_share_one_supervised_baseline_per_seed() -> None:
    """SimCLR resolves `lr_scaling: none`, MoCo's preset `linear`: at batch 256 both build
    SGD with lr 0.5, so they share the baseline (the committed report once counted it twice)."""
    from collections import defaultdict

    from cmp.api.loader import load_plugins
    from cmp.config.cells import resolve
    from cmp.config.recipe import load_recipe
    from cmp.engine.baselines import BaselineContext, baseline_key, baseline_specs
    from cmp.engine.build import build
    from cmp.engine.runner import Runner

    plugins = load_plugins("none")
    recipe = Path(__file__).resolve().parents[3] / "recipes" / "loss_ablation.yaml"
    cells = resolve(load_recipe(recipe, ["data.subset=512", "data.test_subset=100"]), plugins.registry)
    runner = Runner(plugins, Path("unused"))
    keys: dict[int, set[str]] = defaultdict(set)
    spellings: set[str] = set()
    for spec in baseline_specs(cells):
        if spec.choice.name == "supervised":
            context = BaselineContext(runner, spec)
            keys[spec.cell.train.seed].add(baseline_key(build(plugins.registry, spec.choice), context))
            spellings.add(spec.cell.part("optimizer").params["lr_scaling"])
    assert spellings == {"none", "linear"}  # the two methods do spell it differently
    assert {seed: len(found) for seed, found in keys.items()} == {0: 1, 1: 1, 2: 1}
