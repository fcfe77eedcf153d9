"""`cmp run` end to end on a small subset, and `cmp plugins`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from cmp.cli import main

TINY = """\
name: tiny_simclr
data: {dataset: fashion_mnist, subset: 3000, test_subset: 1000}
train: {epochs: 4, batch_size: 128, seed: 0, log_every: 5, eval_every: 2}
defaults:
  encoder: {name: convnet, params: {widths: [16, 32, 64]}}
  augmentation: {name: simclr, params: {crop_scale: [0.3, 1.0]}}
  optimizer: {name: sgd, params: {lr: 0.3, momentum: 0.9, weight_decay: 5.0e-4}}
  schedule: {name: cosine}
methods:
  simclr: {preset: simclr}
eval:
  knn: {k: 50, temperature: 0.1}
  linear: {max_iter: 200}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, Path]:
    tmp = tmp_path_factory.mktemp("e2e")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(TINY)
    out = tmp / "runs"
    code = main(["run", str(recipe), "--out", str(out), "--reports", str(tmp / "reports")])
    return out, code, recipe


def test_run_beats_the_random_encoder_and_writes_its_run_directory(finished_run: tuple[Path, int, Path]) -> None:
    out, code, _ = finished_run
    assert code == 0
    (run_dir,) = [p for p in (out / "tiny_simclr").iterdir() if p.is_dir()]
    assert json.loads((out / "tiny_simclr" / "manifest.json").read_text())["cells"]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert (run_dir / "checkpoint.pt").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["parts"]["loss"]["name"] == "nt_xent"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert result["train"]["steps"] == 4 * (3000 // 128)
    assert result["train"]["images_seen"] == result["train"]["steps"] * 128
    assert result["train"]["images_per_s"] == pytest.approx(result["train"]["images_seen"] / result["train"]["train_time_s"])
    assert result["environment"]["torch"] == torch.__version__
    assert [h["epoch"] for h in result["eval_history"]] == [2, 4]
    (random_init,) = (out / "baselines").glob("random_init-*.json")
    baseline = json.loads(random_init.read_text())
    assert result["metrics"]["knn_top1"] > baseline["metrics"]["knn_top1"] + 0.02, (result["metrics"], baseline["metrics"])


def test_a_second_run_reuses_the_result(finished_run: tuple[Path, int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, _, recipe = finished_run
    assert main(["run", str(recipe), "--out", str(out), "--reports", str(out.parent / "reports")]) == 0
    assert "cached" in capsys.readouterr().out


def test_plugins_lists_every_slot_with_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    losses = {c["name"]: c for c in listing["slots"]["losses"]}
    assert losses["nt_xent"]["distribution"] == "cmp"
    assert losses["nt_xent"]["params"] == [
        {"name": "temperature", "type": "float > 0", "default": 0.1, "required": False}
    ]
    assert main(["plugins", "--slot", "encoders"]) == 0
    text = capsys.readouterr().out
    assert "resnet18" in text and "small_image_stem" in text and "losses" not in text


def test_python_dash_m_cmp_works() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cmp", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("cmp ")
