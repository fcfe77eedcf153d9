"""`cmp run` on streamed data: a generated tree trains, evaluates and reports; bad data is one line.

- a tiny run (60 generated JPEGs, 2 classes, 32 px, one decoding worker) trains from the
  stream, evaluates (kNN and the diagnostics' views) and writes a report, with the raw
  pixels (32x32), random and supervised baselines;
- a missing folder, a split without its folder, a truncated shard: exit 2, one line
  naming it, no traceback;
- more corrupt images than a cell allows fail that cell with one line naming the file,
  and the other cell's result and the report are kept.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from cmp.cli import _format_warning, main
from cmp.streaming import CorruptImageWarning, build_index, write_shards
from cmp.streaming.generate import generate

RECIPE = """\
name: {name}
data: {{dataset: {dataset}, root: {root}, params: {params}}}
train: {{epochs: 2, batch_size: 16, seed: 0, threads: 1, log_every: 2}}
defaults:
  encoder: {{name: convnet, params: {{widths: [8, 16]}}}}
  augmentation: {{name: simclr, params: {{crop_scale: [0.6, 1.0]}}}}
  optimizer: {{name: sgd, params: {{lr: 0.1}}}}
  projection_head: {{name: mlp, params: {{hidden_dim: 32, out_dim: 16}}}}
methods:
  simclr: {{preset: simclr}}
eval: {eval}
baselines: {baselines}
"""


@pytest.fixture(autouse=True)
def quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CMP_PROGRESS", "0")


def recipe(tmp_path: Path, root: Path, name: str = "streamed", dataset: str = "image_tree",
           params: str = "{size: 32, num_workers: 0}", eval: str = "{knn: {k: 5}}", baselines: str = "[]",
           extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(name=name, dataset=dataset, root=root, params=params, eval=eval, baselines=baselines) + extra)
    return path


def run(path: Path, tmp_path: Path) -> int:
    return main(["run", str(path), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")])


def test_a_generated_tree_trains_evaluates_and_reports_from_the_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate(tmp_path / "data", images=60, val_images=20, classes=2)
    path = recipe(tmp_path, tmp_path / "data", params="{size: 32, num_workers: 1}",
                  eval="{knn: {k: 5}, diagnostics: {}}", baselines="[raw_pixels, random_init, supervised]")
    assert run(path, tmp_path) == 0
    (result_file,) = (tmp_path / "runs" / "streamed").glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "ok" and result["train_images"] == 60 and result["test_images"] == 20
    assert result["train"]["steps"] == 2 * (60 // 16) and len(result["train"]["loss_per_epoch"]) == 2
    assert {"knn_top1", "diagnostics_alignment", "diagnostics_rankme"} <= set(result["metrics"])
    manifest = json.loads((tmp_path / "runs" / "streamed" / "manifest.json").read_text())
    labels = {b["label"]: b["status"] for b in manifest["baselines"]}
    assert labels == {"raw_pixels (32x32)": "ok", "random_init (convnet)": "ok", "supervised (convnet, batch 16)": "ok"}
    report = (tmp_path / "reports" / "streamed" / "report.md").read_text()
    assert "raw_pixels (32x32)" in report
    capsys.readouterr()


def test_decoding_on_the_device_trains_to_the_same_result_as_in_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cmp.streaming.loader as loader

    decoded: list[int] = []
    decode = loader.decode_pending
    monkeypatch.setattr(loader, "decode_pending", lambda images, pending, *rest: decoded.append(len(pending)) or decode(images, pending, *rest))
    generate(tmp_path / "data", images=48, val_images=16, classes=2)
    results, jpegs = {}, {}
    for where in ("workers", "device"):
        path = recipe(tmp_path, tmp_path / "data", name=f"decode_{where}", params=f"{{size: 24, num_workers: 1, decode_on: {where}}}")
        assert run(path, tmp_path) == 0
        (result_file,) = (tmp_path / "runs" / f"decode_{where}").glob("*/result.json")
        results[where] = json.loads(result_file.read_text())
        jpegs[where] = sum(decoded)
        decoded.clear()
    # 2 epochs of 3 batches of 16, then the kNN's pass over 48 + 16 images, all decoded in the main process
    assert jpegs == {"workers": 0, "device": 2 * 48 + 48 + 16}
    assert results["device"]["train"]["loss_per_epoch"] == results["workers"]["train"]["loss_per_epoch"]
    assert results["device"]["metrics"] == results["workers"]["metrics"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cmp: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_missing_folder_or_split_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(recipe(tmp_path, tmp_path / "absent"), tmp_path) == 2
    line = one_error_line(capsys)
    assert f"data.root: directory '{tmp_path / 'absent'}' does not exist; it must hold train/<class>/" in line
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    (tmp_path / "half" / "train" / "a" / "x.jpg").write_bytes(b"")
    assert run(recipe(tmp_path, tmp_path / "half"), tmp_path) == 2
    line = one_error_line(capsys)
    assert f"{tmp_path / 'half' / 'val'}: no 'val' folder" in line


def test_a_truncated_shard_is_one_line_naming_it(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for split in ("train", "val"):
        write_shards(build_index(tree, split, cache_dir=tmp_path / "c"), tmp_path / "shards" / split, per_shard=8)
    shard = tmp_path / "shards" / "train" / "shard-000002.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    assert run(recipe(tmp_path, tmp_path / "shards", dataset="image_shards"), tmp_path) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"cmp: error: {shard}: ") and "shard" in line


def test_too_many_corrupt_images_fail_that_cell_alone_with_one_line_naming_the_file(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = recipe(tmp_path, tree, name="corrupt", params="{size: 16, num_workers: 0}",
                  extra="sweep: {data.params.max_corrupt: [0.0, 0.5]}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        assert run(path, tmp_path) == 1
    results = {r["config"]["data"]["params"]["max_corrupt"]: r
               for r in (json.loads(p.read_text()) for p in (tmp_path / "runs" / "corrupt").glob("*/result.json"))}
    assert results[0.5]["status"] == "ok"
    failed = results[0.0]
    assert failed["status"] == "failed" and "\n" not in failed["reason"]
    assert failed["reason"].startswith(str(tree / "train" / "bee" / "broken.jpg") + ": 1 of 41 images cannot be decoded")
    assert (tmp_path / "reports" / "corrupt" / "report.md").is_file()
    err = capsys.readouterr().err
    (said,) = [line for line in err.splitlines() if ": failed (" in line]
    assert "broken.jpg: 1 of 41 images cannot be decoded" in said and "Traceback" not in err


def test_a_corrupt_image_warning_is_one_line() -> None:
    text = _format_warning(CorruptImageWarning("x.jpg: cannot decode (empty file)"), CorruptImageWarning, "loader.py", 3, "code")
    assert text == "cmp: warning: x.jpg: cannot decode (empty file)\n"
    assert "loader.py" in _format_warning(UserWarning("other"), UserWarning, "loader.py", 3, "code")
