"""Bad recipes: each fails before any work with one line naming the file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmp.cli import main
from cmp.config.cells import StepOptions, resolve
from cmp.config.recipe import load_recipe
from cmp.errors import RecipeError

GOOD = """\
name: tiny
data: {dataset: digits}
train: {epochs: 1, batch_size: 64}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  augmentation: {name: simclr, params: {crop_scale: [0.5, 1.0]}}
  optimizer: {name: sgd, params: {lr: 0.1}}
methods:
  simclr: {preset: simclr}
"""

BAD = [
    # (replace this, with this, --set overrides, fragments the message must hold)
    ("train:", "trian:", [], ["recipe.yaml: trian", "unknown key 'trian'", "did you mean 'train'"]),
    ("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: nt_xnet}", [],
     ["methods.simclr.loss.name", "unknown loss 'nt_xnet'", "did you mean 'nt_xent'", "choices: barlow_twins, cosine_regression, dcl, dclw, margin_triplet, moco_v3_infonce, negative_cosine, nt_logistic, nt_xent, vicreg"]),
    ("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: {name: nt_xent, params: {temprature: 0.2}}}", [],
     ["methods.simclr.loss.params.temprature", "unknown key 'temprature'", "did you mean 'temperature'"]),
    ("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: {name: nt_xent, params: {temperature: 0}}}", [],
     ["methods.simclr.loss.params.temperature", "greater than 0", "got 0"]),
    ("", "", ["train.batch_size=0"], ["--set train.batch_size=0", "greater than 0"]),
    ("[0.5, 1.0]", "[0.5, 1.5]", [], ["defaults.augmentation.params.crop_scale.1", "less than or equal to 1"]),
    ("[0.5, 1.0]", "[0.9, 0.2]", [], ["defaults.augmentation.params.crop_scale", "lower bound 0.9 is above upper bound 0.2"]),
    ("[0.5, 1.0]", "[0.0, 1.0]", [], ["defaults.augmentation.params.crop_scale.0", "greater than 0"]),
    ("{dataset: digits}", "{dataset: digits, root: /no/such/folder}", [], ["data.root", "'/no/such/folder' does not exist"]),
    ("{dataset: digits}", "{dataset: fashion_mnst}", [], ["data.dataset", "unknown dataset 'fashion_mnst'", "did you mean 'fashion_mnist'"]),
    ("epochs: 1", "epochs: ten", [], ["train.epochs", "valid integer", "'ten'"]),
    ("{preset: simclr}", "{preset: simclr_v2}", [], ["methods.simclr.preset", "unknown method preset 'simclr_v2'", "did you mean 'simclr'"]),
    ("  simclr: {preset: simclr}\n", "  {}\n", [], ["methods", "names no method"]),
    ("name: tiny", "name: [tiny", [], ["recipe.yaml: line 1: not valid YAML: a flow sequence opened here is not closed",
                                       "expected ',' or ']'", "on line 2"]),
    ("{dataset: digits}", "{dataset: digits", [],
     ["recipe.yaml: line 2: not valid YAML: a flow mapping opened here is not closed", "on line 3"]),
    ("epochs: 1", "epochs: true", [], ["recipe.yaml: train.epochs: a boolean is not a number"]),
    ("batch_size: 64", "batch_size: true", [], ["recipe.yaml: train.batch_size: a boolean is not a number"]),
    ("{lr: 0.1}", "{lr: 1e309}", [], ["recipe.yaml: defaults.optimizer.params.lr: input should be a finite number"]),
    ("{lr: 0.1}", "{lr: 1.0e+309}", [], ["recipe.yaml: defaults.optimizer.params.lr: input should be a finite number", "inf"]),
    ("{lr: 0.1}", "{lr: 0.1, weight_decay: true}", [],
     ["recipe.yaml: defaults.optimizer.params.weight_decay: a boolean is not a number"]),
    ("widths: [8, 16]", "widths: [8, 1000000000000]", [],
     ["recipe.yaml: defaults.encoder.params.widths.1: too large for any size, count or seed"]),
    ("", "", ["train.checkpoint_minutes=.nan"], ["--set train.checkpoint_minutes=.nan: input should be a finite number"]),
    ("", "", ["train.device=gpu"], ["--set train.device=gpu", "auto, cpu, cuda"]),
    ("", "", ["train.epochs.x=1"], ["--set train.epochs.x=1", "inside train.epochs, which is a int"]),
    ("", "", ["train.epochs"], ["--set", "KEY=VALUE"]),
    ("simclr: {preset: simclr}", "simclr: {preset: simclr, negative_source: none}", [],
     ["methods.simclr.negative_source.name", "loss 'nt_xent' needs negatives", "'none' gives none"]),
    ("simclr: {preset: simclr}", "simclr: {encoder: convnet}", [],
     ["methods.simclr", "no projection head chosen", "set methods.simclr.projection_head or defaults.projection_head"]),
    ("name: tiny", "name: tiny\nbaselines: [raw_pixel]", [], ["baselines.0", "unknown baseline 'raw_pixel'", "did you mean 'raw_pixels'"]),
    ("name: tiny", "name: tiny\neval: {knnn: {}}", [], ["eval.knnn", "unknown evaluator 'knnn'", "did you mean 'knn'"]),
    ("widths: [8, 16]", "widths: wide", [], ["defaults.encoder.params.widths", "valid tuple"]),
    ("name: tiny", "name: tiny\neval: {knn: {k: -5}}", [], ["eval.knn.k", "greater than 0"]),
    ("{dataset: digits}", "{dataset: digits, params: {test_fraction: 2}}", [], ["data.params.test_fraction", "less than or equal to 1"]),
]


@pytest.mark.parametrize("old,new,sets,fragments", BAD, ids=[f[3][0] for f in BAD])
def test_bad_recipe_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, sets: list[str], fragments: list[str]
) -> None:
    assert old in GOOD
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD.replace(old, new, 1) if old else GOOD)
    args = ["run", str(path), "--out", str(tmp_path / "runs")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cmp: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


def test_a_missing_recipe_suggests_the_closest_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "simclr_vs_moco.yaml").write_text(GOOD)
    (tmp_path / "recipes" / "byol.yaml").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "recipes/simclr_vs_moc.yaml"]) == 2
    assert capsys.readouterr().err == (
        "cmp: error: recipes/simclr_vs_moc.yaml: recipe file not found (did you mean 'recipes/simclr_vs_moco.yaml'?)\n"
    )
    assert main(["run", "simclr_vs_moco.yml"]) == 2  # not in the current folder: recipes/ is looked at too
    assert "(did you mean 'recipes/simclr_vs_moco.yaml'?)" in capsys.readouterr().err
    assert main(["run", "recipes/something_else.yaml"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_not_a_mapping(write_recipe) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecipeError, match="a recipe is a mapping of keys, got list"):
        load_recipe(write_recipe("- a\n- b\n"))


def test_good_recipe_resolves_with_layers(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(GOOD.replace("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: {name: nt_xent, params: {temperature: 0.2}}}"))
    recipe = load_recipe(path, ["train.epochs=3", "data.subset=100"])
    (cell,) = resolve(recipe, plugins.registry)
    assert cell.train.epochs == 3 and cell.data.subset == 100
    assert cell.parts["encoder"].params["widths"] == (8, 16)  # defaults beat the preset's resnet18
    assert cell.parts["encoder"].name == "convnet"
    assert cell.parts["loss"].params == {"temperature": 0.2, "query": "anchor"}  # the method's own value beats the preset's
    assert cell.parts["target"].name == "shared" and cell.parts["predictor"] is None
    assert cell.parts["optimizer"].params["lr"] == 0.1 and cell.parts["optimizer"].params["momentum"] == 0.9
    assert cell.step == StepOptions(pairs="symmetric", joint_forward=True)


def test_cell_key_changes_with_results_not_with_logging(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(GOOD)
    key = resolve(load_recipe(path), plugins.registry)[0].key()
    assert resolve(load_recipe(path, ["train.log_every=3"]), plugins.registry)[0].key() == key
    assert resolve(load_recipe(path, ["train.seed=1"]), plugins.registry)[0].key() != key


def test_set_reaches_inside_a_slot_given_by_name(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(GOOD.replace("simclr: {preset: simclr}", "simclr: {preset: simclr, schedule: cosine}"))
    recipe = load_recipe(path, ["methods.simclr.schedule.params.warmup_epochs=2"])
    (cell,) = resolve(recipe, plugins.registry)
    assert cell.parts["schedule"].name == "cosine" and cell.parts["schedule"].params["warmup_epochs"] == 2
