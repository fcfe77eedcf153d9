"""`cmp run` end to end on a small subset, where reports go, the dry run's plan, and `cmp plugins`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
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
    captured = capsys.readouterr()
    assert "cached" in captured.out
    assert "cmp: simclr: cached\n" in captured.err


def test_plugins_lists_every_slot_with_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    losses = {c["name"]: c for c in listing["slots"]["losses"]}
    assert losses["nt_xent"]["distribution"] == "cmp-compare"
    assert losses["nt_xent"]["params"] == [
        {"name": "temperature", "type": "float > 0", "default": 0.1, "required": False},
        {"name": "query", "type": "'anchor' | 'positive'", "default": "anchor", "required": False},
    ]
    assert main(["plugins", "--slot", "encoders"]) == 0
    text = capsys.readouterr().out
    assert "resnet18" in text and "small_image_stem" in text and "losses" not in text


def test_python_dash_m_cmp_works() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cmp", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("cmp ")


DIGITS = """\
name: tiny
data: {dataset: digits}
train: {epochs: 1, batch_size: 64, seed: 0}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  augmentation: {name: simclr, params: {crop_scale: [0.5, 1.0]}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
methods:
  simclr: {preset: simclr}
eval: {knn: {k: 20}}
baselines: [raw_pixels]
"""


def reported_keys(folder: Path) -> list[str]:
    return [c["key"] for c in json.loads((folder / "results.json").read_text())["cells"]]


def test_a_run_with_set_overrides_does_not_replace_the_recipes_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(DIGITS)
    assert main(["run", "tiny.yaml"]) == 0
    own = reported_keys(Path("reports/tiny"))
    capsys.readouterr()

    assert main(["run", "tiny.yaml", "--set", "train.epochs=2"]) == 0  # a different configuration
    (trial,) = [d for d in Path("reports").iterdir() if d.name != "tiny"]
    assert trial.name.startswith("tiny-") and reported_keys(trial) != own
    assert reported_keys(Path("reports/tiny")) == own
    captured = capsys.readouterr()
    assert f"the report goes to {trial}/, not reports/tiny/" in captured.err
    assert f"report: {trial / 'report.md'}" in captured.out

    assert main(["report", "runs/tiny"]) == 0  # the last run's manifest says where its report belongs
    assert f"report: {trial / 'report.md'}" in capsys.readouterr().out
    assert reported_keys(Path("reports/tiny")) == own

    manifest = Path("runs/tiny/manifest.json")  # a manifest of an older cmp, which did not say
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "report"}))
    assert main(["report", "runs/tiny"]) == 0
    captured = capsys.readouterr()
    assert "reports/tiny/ holds the report of other cells" in captured.err
    assert reported_keys(Path("reports/tiny")) == own

    assert main(["run", "tiny.yaml", "--set", "train.log_every=3"]) == 0  # changes no result: the recipe's report
    assert "note" not in capsys.readouterr().err
    assert main(["run", "tiny.yaml", "--set", "train.epochs=2", "--reports", "elsewhere"]) == 0
    assert reported_keys(Path("elsewhere/tiny")) != own


def test_dry_run_plans_cells_and_baselines_with_an_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(DIGITS)
    assert main(["run", "tiny.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "simclr" in out and "train" in out and "raw_pixels" in out and "compute" in out
    assert "no estimate" in out and "data: digits: found (1438 training images)" in out
    assert not Path("runs").exists()

    assert main(["run", "tiny.yaml"]) == 0
    capsys.readouterr()
    assert main(["run", "tiny.yaml", "--set", "train.epochs=3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    baseline_row = next(line for line in out.splitlines() if line.startswith("raw_pixels"))
    assert "cached" in baseline_row  # the baseline does not depend on the epochs
    cell_row = next(line for line in out.splitlines() if line.startswith("simclr"))
    assert "train" in cell_row and "~" in cell_row and "estimate: about" in out
    assert "report: reports/tiny-" in out


def test_dry_run_reports_a_missing_data_set_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torchvision

    downloads = []

    def cifar(root: str, train: bool = True, download: bool = False) -> None:
        downloads.append(download)
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", cifar)
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CMP_DATA", raising=False)
    recipe = tmp_path / "c.yaml"
    recipe.write_text(DIGITS.replace("dataset: digits", "dataset: cifar10"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "simclr" in captured.out and "data missing" in captured.out and "raw_pixels" in captured.out
    assert "data: cifar10: not found here" in captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith("cmp: error: data.dataset cifar10: cifar10 not found.")
    assert "`cmp run` would try to download it (a dry run never does)" in line
    assert True not in downloads and not (tmp_path / "cache").exists()


def test_dry_run_shows_where_methods_differ_and_what_a_preset_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "two.yaml"
    recipe.write_text(DIGITS.replace("  simclr: {preset: simclr}", "  simclr: {preset: simclr}\n  moco: {preset: moco}"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    simclr = next(line for line in lines if line.startswith("  simclr "))
    moco = next(line for line in lines if line.startswith("  moco "))
    assert "optimizer.lr_scaling=none" in simclr and "target=shared" in simclr
    assert "optimizer.lr_scaling=linear (preset 'moco')" in moco and "target=momentum" in moco
    assert "optimizer.lr=" not in moco  # the same for both: not a difference


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_flag_error_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(DIGITS)
    assert main(["run", str(recipe), "--device", "cuda", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == "cmp: error: --device cuda: 'cuda' asked for, but CUDA is not available here\n"


@pytest.mark.parametrize("args", [["plugins", "--json"], ["plugins"]])
def test_a_closed_output_pipe_is_a_quiet_exit(args: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cmp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head -c 300` does once it has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_plugins_text_listing_keeps_sentences_whole_and_columns_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--slot", "losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    entries = [line for line in lines if line.startswith("  ") and not line.startswith("   ")]
    names = ["barlow_twins", "cosine_regression", "dcl", "dclw", "margin_triplet", "moco_v3_infonce",
             "negative_cosine", "nt_logistic", "nt_xent", "vicreg"]
    assert [line.split()[0] for line in entries] == names
    columns = {line.index(line.split()[1]) for line in entries}
    assert columns == {len("  cosine_regression  ")}
    assert main(["plugins", "--slot", "augmentations"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    from cmp_plugins.augmentations import byol

    first_paragraph = " ".join(textwrap.dedent(byol.__doc__ or "").strip().split("\n\n")[0].split())
    assert first_paragraph.endswith(".") and first_paragraph in text
