"""A cell's run directory: what is cached, what a plan says, and the estimate from finished cells."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from cmp.api.results import RESULT_FORMAT, RunResult, TrainStats
from cmp.config.cells import resolve
from cmp.config.recipe import TrainSection, load_recipe
from cmp.engine.checkpoint import save_checkpoint
from cmp.engine.rundir import (
    RunDirectory,
    _median,
    estimate_seconds,
    finished_results,
    older_results,
    read_result,
    write_json,
)

RECIPE = """\
name: dirs
data: {dataset: digits}
train: {epochs: 3, batch_size: 64}
defaults:
  encoder: {name: convnet, params: {widths: [8]}}
methods:
  simclr: {preset: simclr}
eval: {knn: {k: 5}}
baselines: []
"""


def result(method: str, train_time: float, seen: int, wall: float, train_images: int, **kw: Any) -> RunResult:
    stats = TrainStats(
        epochs=1, steps=1, batch_size=64, train_time_s=train_time, images_per_s=seen / train_time,
        loss_per_epoch=[1.0], final_loss=1.0, images_seen=seen,
    )
    fields: dict[str, Any] = dict(
        recipe="dirs", method=method, cell=method, key="k", status="ok", train=stats,
        train_images=train_images, wall_time_s=wall,
    )
    return RunResult(**{**fields, **kw})


def test_median_of_odd_and_even_counts() -> None:
    assert _median([5.0, 1.0, 3.0]) == 3.0
    assert _median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert _median([7.0]) == 7.0
    assert _median([1.0, 9.0]) == 5.0


def test_the_estimate_is_time_per_image_seen_plus_the_rest_scaled_by_the_split() -> None:
    cell = SimpleNamespace(method="simclr", train=TrainSection(epochs=3, batch_size=64))
    same = [
        result("simclr", train_time=10.0, seen=1000, wall=14.0, train_images=500),  # 0.01 s per image, rest 4 s
        result("simclr", train_time=30.0, seen=2000, wall=31.0, train_images=1000),  # 0.015, rest 1 s
        result("simclr", train_time=60.0, seen=2000, wall=62.0, train_images=800),  # 0.03, rest 2 s
    ]
    other = result("moco", train_time=1.0, seen=1000, wall=100.0, train_images=800)
    # 800 training images: 12 steps of 64 per epoch, 3 epochs: 2304 images seen
    per_image = 0.015
    rest = 2.0  # the median of 4 * 800 / 500, 1 * 800 / 1000 and 2 * 800 / 800
    assert estimate_seconds(cell, 800, [*same, other]) == pytest.approx(per_image * 2304 + rest)
    # no finished cell of this method: every method's cells are the reference
    alone = SimpleNamespace(method="byol", train=TrainSection(epochs=1, batch_size=100))
    # per image: median of 0.01, 0.015, 0.001; rest: median of 6.4, 0.8, 99; 8 steps of 100
    assert estimate_seconds(alone, 800, same[:2] + [other]) == pytest.approx(0.01 * 800 + 6.4)
    assert estimate_seconds(cell, 800, []) is None
    # a step budget: 5 steps of 64 images, whatever the epoch length
    steps = SimpleNamespace(method="simclr", train=TrainSection(epochs=3, steps=5, batch_size=64))
    assert estimate_seconds(steps, 800, same) == pytest.approx(per_image * 5 * 64 + rest)
    # a wall time below the training time (clock skew) adds nothing, never a negative time
    assert estimate_seconds(cell, 800, [result("simclr", 10.0, 1000, 9.0, 800)]) == pytest.approx(0.01 * 2304)
    # a result that does not say how many images it saw gives no time per image, only the rest
    blind = result("simclr", 10.0, 1000, 13.0, 800)
    blind = blind.model_copy(update={"train": blind.train.model_copy(update={"images_seen": None})})
    assert estimate_seconds(cell, 800, [same[0], blind]) == pytest.approx(0.01 * 2304 + (6.4 + 3.0) / 2)


def test_finished_and_older_results_of_a_recipe_directory(tmp_path: Path) -> None:
    runs = tmp_path / "dirs"
    kept = result("simclr", 10.0, 1000, 12.0, 500)
    for name, data in {
        "a": kept,
        "b": kept.model_copy(update={"status": "failed", "reason": "boom"}),
        "c": kept.model_copy(update={"train": kept.train.model_copy(update={"images_seen": None})}),
        "d": kept.model_copy(update={"train": None}),
    }.items():
        (runs / name).mkdir(parents=True)
        write_json(runs / name / "result.json", data)
    (runs / "e").mkdir()
    (runs / "e" / "result.json").write_text("{not json")
    (runs / "f").mkdir()
    (runs / "f" / "result.json").write_text(json.dumps({"method": "x"}))  # format 1: no format field
    for i in range(5):  # unreadable and older results mixed: every older one is counted
        (runs / f"old{i}").mkdir()
        (runs / f"old{i}" / "result.json").write_text(json.dumps({"format": 1, "method": "x"}))
        (runs / f"bad{i}").mkdir()
        (runs / f"bad{i}" / "result.json").write_text("not json" if i % 2 else "")
    (runs / "g").mkdir()
    (runs / "g" / "result.json").write_text(json.dumps([1, 2]))  # not a result at all
    found = finished_results(runs)
    assert [r.model_dump() for r in found] == [kept.model_dump()]
    assert older_results(runs) == 6
    assert json.loads((runs / "a" / "result.json").read_text())["format"] == RESULT_FORMAT
    assert [p.name for p in (runs / "a").iterdir()] == ["result.json"]  # written through a temporary file
    assert read_result(runs / "e" / "result.json") is None and read_result(runs / "missing.json") is None


def test_a_run_directory_plans_cached_resume_retry_and_train(tmp_path: Path, plugins) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dirs.yaml"
    path.write_text(RECIPE)
    (cell,) = resolve(load_recipe(path), plugins.registry)
    run = RunDirectory(tmp_path / "runs", cell)
    assert run.path == tmp_path / "runs" / "dirs" / f"simclr-{cell.key()}"
    assert run.plan() == "train" and run.cached() is None and run.read_checkpoint() is None
    run.prepare()
    written = (run.path / "config.yaml").read_text()
    assert yaml.safe_load(written) == cell.config()
    assert [line.split(":")[0] for line in written.splitlines() if not line.startswith(" ")] == list(cell.config())  # in the config's order, not sorted

    save_checkpoint(run.checkpoint, {"key": cell.key(), "position": {"step": 7}})
    assert run.plan() == "resume at step 7"
    failed = result("simclr", 1.0, 10, 1.0, 10, key=cell.key(), status="failed", reason="boom")
    run.write_result(failed)
    assert run.plan() == "failed before; resume at step 7" and run.cached() is None
    run.checkpoint.unlink()
    assert run.plan() == "failed before; retry"

    run.checkpoint.write_bytes(b"garbage")
    plan = run.plan()
    assert plan.startswith("failed before; unreadable checkpoint (cannot read checkpoint")
    assert plan.endswith("): set aside, train from scratch")
    assert run.set_aside() == run.path / "checkpoint.pt.unreadable-1" and not run.checkpoint.exists()
    run.checkpoint.write_bytes(b"garbage again")
    assert run.set_aside("stale") == run.path / "checkpoint.pt.stale-1"
    run.checkpoint.write_bytes(b"and again")
    assert run.set_aside() == run.path / "checkpoint.pt.unreadable-2"

    ok = failed.model_copy(update={"status": "ok", "reason": None})
    run.write_result(ok)
    cached = run.cached()
    assert cached is not None and cached.cached and cached.key == cell.key()
    assert run.plan() == "cached"
    run.write_result(ok.model_copy(update={"key": "another"}))  # a result of another configuration
    assert run.cached() is None and run.plan() == "failed before; retry"
    assert run.write_error("Traceback ...") == run.path / "error.txt"
    assert (run.path / "error.txt").read_text() == "Traceback ..."


def test_plain_data_is_written_as_indented_json(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    data = {"cells": 2, "out": tmp_path, "names": ["a", "b"]}
    write_json(path, data)
    assert path.read_text() == json.dumps({"cells": 2, "out": str(tmp_path), "names": ["a", "b"]}, indent=2)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
