"""Evaluate-only cells (`train.epochs: 0`, or `evaluate_only: true` on a method): the encoder
as built and loaded, evaluated with no training; cached by a key holding what defines it,
a weights file's contents included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cmp.api.loader import Plugins
from cmp.cli import main
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.errors import RecipeError
from cmp_plugins.encoders import convnet

RECIPE = """\
name: evaluate
data: {dataset: digits, subset: 256, test_subset: 128}
train: {epochs: 0, seed: 3}
methods:
  random_convnet: {encoder: {name: convnet, params: {widths: [8, 16]}}}
eval: {knn: {k: 20}, linear: {max_iter: 200}}
baselines: [random_init, supervised]
"""


def test_an_evaluate_only_random_encoder_has_the_random_init_baselines_metrics(
    write_recipe: Callable[[str], Path], tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    assert main(["run", str(write_recipe(RECIPE)), "--out", str(out), "--reports", str(tmp_path / "reports")]) == 0
    (result_path,) = (out / "evaluate").glob("*/result.json")
    result = json.loads(result_path.read_text())
    assert result["status"] == "ok" and result["train"] is None
    assert not list(result_path.parent.glob("checkpoint.pt"))  # nothing trained, nothing to resume
    (baseline_path,) = (out / "baselines").glob("random_init-*.json")
    baseline = json.loads(baseline_path.read_text())
    assert set(result["metrics"]) == set(baseline["metrics"]) == {"knn_top1", "linear_top1"}
    assert result["metrics"] == baseline["metrics"]  # the same encoder (the cell's seed), the same protocol
    assert not list((out / "baselines").glob("supervised-*.json"))  # a trained baseline has no budget here


def test_the_key_holds_what_evaluates_and_not_what_would_train(write_recipe: Callable[[str], Path], plugins: Plugins) -> None:
    path = write_recipe(RECIPE)

    def key(*overrides: str) -> str:
        (cell,) = resolve(load_recipe(path, list(overrides)), plugins.registry)
        return cell.key()

    assert key() == key("train.batch_size=64", "train.eval_every=1")
    assert key() == key("defaults.optimizer.name=lars", "methods.random_convnet.preset=simclr")
    assert key() != key("train.seed=4")
    assert key() != key("methods.random_convnet.encoder.params.widths=[8, 32]")
    (cell,) = resolve(load_recipe(path, ["methods.random_convnet.preset=simclr"]), plugins.registry)
    assert cell.parts["loss"] is None and cell.parts["optimizer"] is None
    assert cell.part("augmentation").name == "simclr"


def test_a_weights_file_is_in_the_key_by_its_contents(
    write_recipe: Callable[[str], Path], plugins: Plugins, tmp_path: Path
) -> None:
    weights = tmp_path / "conv.pt"
    path = write_recipe(RECIPE)
    with_file = f"methods.random_convnet.encoder.params.weights={weights}"

    def cell_for(seed: int):  # type: ignore[no-untyped-def]
        torch.manual_seed(seed)
        torch.save(convnet(_digits_info(), widths=(8, 16)).state_dict(), weights)
        (cell,) = resolve(load_recipe(path, [with_file]), plugins.registry)
        return cell

    first, second = cell_for(0), cell_for(1)
    assert first.config()["weights"]["encoder"]["path"] == str(weights)
    assert len(first.config()["weights"]["encoder"]["sha256"]) == 64
    assert first.key() != second.key()  # the same path, other contents


def test_an_evaluate_only_method_runs_beside_trained_ones(write_recipe: Callable[[str], Path], plugins: Plugins) -> None:
    path = write_recipe("""\
        name: mixed
        data: {dataset: digits, subset: 256}
        train: {epochs: 2, batch_size: 64}
        defaults: {encoder: convnet}
        methods:
          simclr: {preset: simclr}
          untrained: {preset: simclr, evaluate_only: true}
        """)
    trained, untrained = resolve(load_recipe(path), plugins.registry)
    assert trained.train.epochs == 2 and trained.parts["loss"] is not None
    assert untrained.train.epochs == 0 and untrained.train.evaluate_only and untrained.parts["loss"] is None


def test_no_steps_budget_with_zero_epochs(write_recipe: Callable[[str], Path]) -> None:
    with pytest.raises(RecipeError, match="epochs: 0 evaluates without training"):
        load_recipe(write_recipe(RECIPE), ["train.steps=10"])


def test_a_weights_file_that_does_not_fit_is_exit_2_with_one_line(
    write_recipe: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "wide.pt"
    torch.save(convnet(_digits_info(), widths=(4, 16)).state_dict(), weights)
    code = main(["run", str(write_recipe(RECIPE)), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "rep"),
                 "--set", f"methods.random_convnet.encoder.params.weights={weights}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"cmp: error: {weights}: does not fit encoder 'convnet': shapes differ (file vs encoder): "
                   "features.0.weight (4, 1, 3, 3) vs (8, 1, 3, 3), features.1.weight (4,) vs (8,), "
                   "features.1.bias (4,) vs (8,) (and 3 more)"]
    assert not list((tmp_path / "runs").glob("evaluate/*/result.json"))  # refused before any cell ran


def test_a_missing_weights_file_is_a_recipe_error_at_its_key(write_recipe: Callable[[str], Path], plugins: Plugins) -> None:
    with pytest.raises(RecipeError, match=r"methods.random_convnet.encoder.params.weights=nowhere.pt: no such weights "
                       r"file \(got 'nowhere.pt'\)"):
        resolve(load_recipe(write_recipe(RECIPE), ["methods.random_convnet.encoder.params.weights=nowhere.pt"]),
                plugins.registry)


SEEDED = RECIPE + "sweep:\n  - {train.seed: [0, 1]}\n"


def _save_per_seed(tmp_path: Path, seeds: tuple[int, ...]) -> Path:
    """`conv-<seed>.pt` for each seed, each a convnet initialised from that seed."""
    for seed in seeds:
        torch.manual_seed(seed)
        torch.save(convnet(_digits_info(), widths=(8, 16)).state_dict(), tmp_path / f"conv-{seed}.pt")
    return tmp_path / "conv-{seed}.pt"


def test_a_seed_placeholder_names_one_weights_file_per_seed(
    write_recipe: Callable[[str], Path], plugins: Plugins, tmp_path: Path
) -> None:
    pattern = _save_per_seed(tmp_path, (0, 1))
    cells = resolve(load_recipe(write_recipe(SEEDED), [f"methods.random_convnet.encoder.params.weights={pattern}"]),
                    plugins.registry)
    files = {c.train.seed: c.config()["weights"]["encoder"] for c in cells}
    assert {s: f["path"] for s, f in files.items()} == {0: str(tmp_path / "conv-0.pt"), 1: str(tmp_path / "conv-1.pt")}
    assert files[0]["sha256"] == _sha256(tmp_path / "conv-0.pt") != files[1]["sha256"]
    assert files[0]["pattern"] == str(pattern)
    (literal,) = resolve(load_recipe(write_recipe(RECIPE), ["train.seed=0",
                         f"methods.random_convnet.encoder.params.weights={tmp_path / 'conv-0.pt'}"]), plugins.registry)
    assert literal.key() == next(c for c in cells if c.train.seed == 0).key()  # the file counts, not how it was named


def test_a_seed_without_its_weights_file_is_a_recipe_error_naming_that_file(
    write_recipe: Callable[[str], Path], plugins: Plugins, tmp_path: Path
) -> None:
    pattern = _save_per_seed(tmp_path, (0,))
    with pytest.raises(RecipeError, match=f"no such weights file \\(got '{tmp_path / 'conv-1.pt'}'\\)"):
        resolve(load_recipe(write_recipe(SEEDED), [f"methods.random_convnet.encoder.params.weights={pattern}"]),
                plugins.registry)


def test_cmp_eval_over_seeds_reads_each_seeds_file_and_reports_one_group(tmp_path: Path) -> None:
    pattern = _save_per_seed(tmp_path, (0, 1))
    assert main(["eval", "convnet", "--weights", str(pattern), "--seed", "0", "1", "--param", "widths=[8, 16]",
                 "--data", "digits", "--subset", "256", "--test-subset", "128", "--out", str(tmp_path / "runs"),
                 "--reports", str(tmp_path / "rep"), "--set", "baselines=[]", "--set", "eval.linear.max_iter=100"]) == 0
    recipe = load_recipe(tmp_path / "runs" / "eval_conv" / "recipe.yaml")
    assert list(recipe.model.methods) == ["conv"]
    configs = sorted(json.loads(p.read_text())["config"]["weights"]["encoder"]["path"]
                     for p in (tmp_path / "runs" / "eval_conv").glob("*/result.json"))
    assert configs == [str(tmp_path / "conv-0.pt"), str(tmp_path / "conv-1.pt")]
    (report,) = (tmp_path / "rep").glob("*/report.md")
    text = report.read_text()
    assert "conv [conv-{seed}.pt]" in text and "sha256:" not in text


def _digits_info():  # type: ignore[no-untyped-def]
    from cmp.api.contracts import DataInfo

    return DataInfo("digits", 1, 8, 8, 10, (0.5,), (0.25,))


def test_cmp_eval_writes_its_recipe_and_a_report_naming_the_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "conv.pt"
    torch.manual_seed(5)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in convnet(_digits_info(), widths=(8, 16)).state_dict().items()}},
               weights)
    args = ["eval", "convnet", "--weights", str(weights), "--param", "widths=[8, 16]", "--data", "digits",
            "--subset", "256", "--test-subset", "128", "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "rep"),
            "--set", "eval.linear.max_iter=100"]
    assert main(args) == 0
    recipe = load_recipe(tmp_path / "runs" / "eval_conv" / "recipe.yaml")
    assert recipe.model.train.evaluate_only and list(recipe.model.methods) == ["conv"]
    (report,) = (tmp_path / "rep").glob("*/report.md")
    assert f"conv [conv.pt sha256:{_sha256(weights)[:12]}]" in report.read_text()

    capsys.readouterr()
    assert main([*args[:3], str(tmp_path / "nowhere.pt"), *args[4:]]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cmp: error: --weights {tmp_path / 'nowhere.pt'}: no such weights file (got '{tmp_path / 'nowhere.pt'}')")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_dry_run_plans_an_evaluate_only_cell_as_an_evaluation(
    write_recipe: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = """\
name: plan
data: {dataset: digits, subset: 256, test_subset: 128}
train: {epochs: 1, batch_size: 64}
defaults: {encoder: {name: convnet, params: {widths: [8, 16]}}}
methods:
  random: {evaluate_only: true}
  simclr: {preset: simclr}
baselines: []
"""
    assert main(["run", str(write_recipe(recipe)), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    plans = {line.split()[0]: line.split()[2] for line in out.splitlines() if line.startswith(("random ", "simclr "))}
    assert plans == {"random": "evaluate", "simclr": "train"}
    assert "2 cell(s), 1 to train, 1 to evaluate only;" in out
