"""Sweeps: grids expand to cells, layer over the methods, and fail clearly."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmp.api.loader import Plugins, load_plugins
from cmp.config.cells import method_differences, resolve
from cmp.config.recipe import load_recipe
from cmp.errors import RecipeError

BASE = """\
name: sweep
data: {dataset: digits}
train: {epochs: 1, batch_size: 32}
defaults:
  encoder: convnet
  optimizer: sgd
methods:
  simclr: {preset: simclr}
  moco: {preset: moco}
"""


def refusal(path: Path, registry: Any) -> str:
    """The one-line error that resolving the recipe at `path` raises."""
    with pytest.raises(RecipeError) as caught:
        resolve(load_recipe(path), registry)
    return str(caught.value)


@pytest.fixture
def plugins_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Plugins]:
    """cmp's plugins and one more module, written from `source`: a third party's plugin."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(name: str, source: str) -> Plugins:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.delitem(sys.modules, name, raising=False)
        return load_plugins("none", [name])

    return load


def cells_of(write_recipe, plugins, sweep: str):  # type: ignore[no-untyped-def]
    return resolve(load_recipe(write_recipe(BASE + sweep)), plugins.registry)


def test_a_grid_is_the_product_for_every_method(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    cells = cells_of(write_recipe, plugins, "sweep: {train.batch_size: [16, 32], train.seed: [0, 1, 2]}\n")
    assert len(cells) == 2 * 2 * 3
    simclr = [c for c in cells if c.method == "simclr"]
    assert sorted((c.train.batch_size, c.train.seed) for c in simclr) == [(b, s) for b in (16, 32) for s in (0, 1, 2)]
    assert len({c.key() for c in cells}) == 12
    assert simclr[0].name == "simclr[train.batch_size=16,train.seed=0]"


def test_a_swept_loss_replaces_the_methods_loss_and_its_parameters(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    cells = cells_of(write_recipe, plugins, "sweep: {loss.name: [nt_xent, margin_triplet]}\n")
    moco = {c.parts["loss"].name: c for c in cells if c.method == "moco"}
    assert moco["nt_xent"].parts["loss"].params == {"temperature": 0.2, "query": "anchor"}  # the preset's
    assert moco["margin_triplet"].parts["loss"].params == {"margin": 0.5, "semi_hard": False}
    assert moco["margin_triplet"].parts["negative_source"].name == "queue"


def test_grids_in_a_list_and_method_specific_keys(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    sweep = (
        "sweep:\n"
        "  - {loss.name: [nt_logistic], loss.params.semi_hard: [false, true]}\n"
        "  - {methods.moco.negative_source.params.size: [64, 128]}\n"
    )
    cells = cells_of(write_recipe, plugins, sweep)
    assert sum(c.method == "simclr" for c in cells) == 2 + 1  # the second grid leaves simclr unchanged once
    sizes = sorted(c.parts["negative_source"].params["size"] for c in cells if c.method == "moco" and c.parts["loss"].name == "nt_xent")
    assert sizes == [64, 128]
    semi = [c.parts["loss"].params["semi_hard"] for c in cells if c.parts["loss"].name == "nt_logistic" and c.method == "simclr"]
    assert sorted(semi) == [False, True]


@pytest.mark.parametrize(
    "sweep,fragments",
    [
        ("sweep: {seed: [0, 1]}\n", ["sweep.seed", "unknown sweep key 'seed'"]),
        ("sweep: {train.batch_size: [16, 0]}\n", ["sweep.train.batch_size", "greater than 0"]),
        ("sweep: {loss.name: [nt_xent, nt_xnet]}\n", ["sweep.loss.name", "unknown loss 'nt_xnet'"]),
        ("sweep: {loss.name: [margin_triplet], loss.params.temperature: [0.1]}\n",
         ["sweep.loss.params.temperature", "unknown key 'temperature'"]),
        ("sweep: {train.epochs: []}\n", ["sweep", "train.epochs lists no values"]),
        ("sweep:\n  - {loss.params.temprature: [0.1]}\n", ["sweep.0.loss.params.temprature", "did you mean 'temperature'"]),
        # a value outside a union (pairs: a name or a list of pairs): the key, not pydantic's name of the union member
        ("sweep: {pairs: [sideways]}\n", ["sweep.pairs: input should be 'symmetric', 'one_way' or 'multicrop'"]),
        # SimCLR's preset warms up for one epoch: a warm-up fraction beside it is refused at load (check_params)
        ("sweep: {schedule.params.warmup_fraction: [0.1]}\n",
         ["sweep.schedule.params.warmup_fraction", "give warmup_epochs (1.0) or warmup_fraction (0.1), not both"]),
    ],
)
def test_bad_sweeps_name_the_sweep_key(write_recipe, plugins, sweep: str, fragments: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecipeError) as info:
        cells_of(write_recipe, plugins, sweep)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


KEY_RECIPE = """\
name: keys
data: {dataset: digits}
train: {epochs: 2, batch_size: 32}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
methods:
  moco: {preset: moco}
eval: {knn: {k: 20}}
baselines: []
"""

OVERRIDES: dict[str, tuple[tuple[str, ...], st.SearchStrategy[Any]]] = {
    # recipe key: (where its resolved value is in Cell.config(), values to try)
    "train.epochs": (("train", "epochs"), st.integers(1, 4)),
    "train.steps": (("train", "steps"), st.one_of(st.none(), st.integers(1, 40))),
    "train.batch_size": (("train", "batch_size"), st.sampled_from([16, 32, 64])),
    "train.seed": (("train", "seed"), st.integers(0, 2)),
    "train.precision": (("train", "precision"), st.sampled_from(["fp32", "bf16", "fp16"])),
    "train.channels_last": (("train", "channels_last"), st.booleans()),
    "train.eval_every": (("train", "eval_every"), st.integers(0, 2)),
    "train.checkpoint_minutes": (("train", "checkpoint_minutes"), st.sampled_from([10, 10.0, 2.5])),
    "train.collapse_std": (("train", "collapse_std"), st.sampled_from([1e-4, 0.0, 1e-3])),
    "train.log_every": (("train", "log_every"), st.integers(1, 50)),
    "train.threads": (("train", "threads"), st.one_of(st.none(), st.integers(1, 4))),
    "data.subset": (("data", "subset"), st.one_of(st.none(), st.sampled_from([100, 500]))),
    "data.split_seed": (("data", "split_seed"), st.integers(0, 2)),
    "methods.moco.loss.params.temperature": (("parts", "loss", "params", "temperature"), st.sampled_from([0.2, 0.1, 0.5])),
    "methods.moco.negative_source.params.size": (("parts", "negative_source", "params", "size"), st.sampled_from([4096, 256])),
    "methods.moco.target.params.momentum": (("parts", "target", "params", "momentum"), st.sampled_from([0.99, 0.999])),
    "methods.moco.target.params.bn_shuffle_groups": (("parts", "target", "params", "bn_shuffle_groups"), st.integers(1, 4)),
    "defaults.encoder.params.widths": (("parts", "encoder", "params", "widths"), st.sampled_from([[8, 16], [8, 8], [4, 8, 16]])),
    "defaults.optimizer.params.lr": (("parts", "optimizer", "params", "lr"), st.sampled_from([0.06, 0.1])),
    "methods.moco.optimizer.params.nesterov": (("parts", "optimizer", "params", "nesterov"), st.booleans()),
    "methods.moco.projection_head.params.out_dim": (("parts", "projection_head", "params", "out_dim"), st.sampled_from([128, 64])),
    "eval.knn.k": (("eval", "knn", "params", "k"), st.sampled_from([20, 5])),
    "eval.knn.temperature": (("eval", "knn", "params", "temperature"), st.sampled_from([0.1, 0.07])),
    "methods.moco.pairs": (("step", "pairs"), st.sampled_from(["one_way", "symmetric"])),
    "methods.moco.joint_forward": (("step", "joint_forward"), st.booleans()),
}
UNHASHED = {"train.log_every", "train.threads", "train.checkpoint_minutes"}  # how a run is logged, threaded and
# checkpointed, not what it computes; and train.epochs when train.steps decides the budget:


def hashed(key: str, config: dict[str, Any]) -> bool:
    return key not in UNHASHED and not (key == "train.epochs" and config["train"]["steps"] is not None)


def resolved_at(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        config = config[part]
    return config


@st.composite
def overrides(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(OVERRIDES)), min_size=1, max_size=3, unique=True))
    return {key: draw(OVERRIDES[key][1]) for key in keys}


@settings(max_examples=60, deadline=None)
@given(overrides())
def test_an_override_changes_the_cache_key_exactly_when_it_changes_a_resolved_value(
    tmp_path_factory: pytest.TempPathFactory, plugins, chosen: dict[str, Any]  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path_factory.getbasetemp() / "cache_key_recipe.yaml"
    path.write_text(KEY_RECIPE)
    (base,) = resolve(load_recipe(path), plugins.registry)
    (cell,) = resolve(load_recipe(path, [f"{k}={json.dumps(v)}" for k, v in chosen.items()]), plugins.registry)
    before, after = base.config(), cell.config()
    changed = False
    for key, value in chosen.items():
        where = OVERRIDES[key][0]
        assert resolved_at(after, where) == value, key  # the override reached the resolved cell
        changed |= hashed(key, after) and resolved_at(before, where) != value
    assert (cell.key() != base.key()) == changed, (chosen, {k: resolved_at(before, OVERRIDES[k][0]) for k in chosen})


def test_method_differences_leave_out_swept_values_and_mark_what_a_preset_kept(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    cells = cells_of(write_recipe, plugins, "sweep: {train.seed: [0, 1], loss.params.temperature: [0.1, 0.2]}\n")
    rows = {cell.name: row for cell, row in zip(cells, method_differences(cells))}
    simclr = rows["simclr[train.seed=0,loss.params.temperature=0.1]"]
    moco = rows["moco[train.seed=0,loss.params.temperature=0.1]"]
    assert simclr["target"] == "shared" and moco["target"] == "momentum"
    assert moco["optimizer.lr_scaling"] == "linear (preset 'moco')"  # `defaults.optimizer: sgd` named it again
    assert "loss.temperature" not in moco  # swept: in the cell's name, not a difference of methods
    moco_cell = next(c for c in cells if c.method == "moco")
    optimizer = moco_cell.parts["optimizer"]
    assert optimizer is not None and optimizer.where == "defaults.optimizer.name"
    assert optimizer.param_sources["lr_scaling"] == "preset 'moco'.optimizer.params.lr_scaling"


def test_the_cache_key_hashes_the_resolved_configuration_as_documented(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    """The key names every run directory, so its derivation is part of the on-disk format:
    sha256 of the sorted, compact JSON of the resolved configuration without the recipe
    name, the sweep point and the baselines (and without the train keys that do not change
    what is computed: train.log_every, train.threads, train.checkpoint_minutes...; and
    train.epochs when train.steps is set), with the configuration format (3) added; its
    first 12 hex digits."""
    import hashlib

    from cmp.config.cell import UNHASHED_TRAIN_KEYS

    assert {"log_every", "threads", "checkpoint_minutes"} <= set(UNHASHED_TRAIN_KEYS)
    assert not {"epochs", "steps", "seed", "batch_size", "precision"} & set(UNHASHED_TRAIN_KEYS)
    cells = cells_of(write_recipe, plugins, "sweep: {train.seed: [0, 1], train.steps: [null, 20]}\n")
    assert len(cells) == 2 * 2 * 2
    for cell in cells:
        config = cell.config()
        assert list(config) == ["recipe", "method", "sweep", "data", "train", "parts", "step", "eval", "baselines"]
        assert (config["recipe"], config["method"]) == (cell.recipe, cell.method)
        hashed = {k: v for k, v in config.items() if k not in ("recipe", "sweep", "baselines")}
        hashed["train"] = {k: v for k, v in hashed["train"].items()
                           if k not in UNHASHED_TRAIN_KEYS and not (k == "epochs" and config["train"]["steps"])}
        hashed["format"] = 3
        blob = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        assert cell.key() == hashlib.sha256(blob.encode()).hexdigest()[:12]


def test_checkpointing_and_epochs_under_a_step_budget_leave_the_key_and_run_directory_alone(  # type: ignore[no-untyped-def]
    write_recipe, plugins, tmp_path: Path,
) -> None:
    """How often a checkpoint is written does not change what is computed, nor does
    train.epochs when train.steps decides the budget: the cell keeps its key, so its
    result is reused and the report does not move; epochs still count without steps."""
    from cmp.engine.rundir import RunDirectory

    path = write_recipe(BASE)

    def cells(*overrides: str) -> list[Any]:
        return resolve(load_recipe(path, list(overrides)), plugins.registry)

    def keys(*overrides: str) -> list[str]:
        return [cell.key() for cell in cells(*overrides)]

    assert keys("train.checkpoint_minutes=0.5") == keys()
    assert keys("train.steps=20", "train.epochs=5") == keys("train.steps=20") != keys()
    assert keys("train.steps=20", "train.epochs=5", "train.checkpoint_minutes=2") == keys("train.steps=20")
    assert keys("train.epochs=5") != keys()
    every_minute, every_ten = cells("train.checkpoint_minutes=1")[0], cells()[0]
    assert RunDirectory(tmp_path, every_minute).path == RunDirectory(tmp_path, every_ten).path


def test_paths_in_a_configuration_are_written_as_text() -> None:
    from pathlib import Path

    from cmp.config.cell import plain

    assert plain({"root": Path("/data/x"), "sizes": (1, [2, Path("y")])}) == {"root": "/data/x", "sizes": [1, [2, "y"]]}


def test_parameters_wrong_only_together_are_one_error_at_their_recipe_key(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    both = BASE.replace("  optimizer: sgd\n", "  optimizer: sgd\n  schedule: {name: constant, params: {warmup_epochs: 2, warmup_fraction: 0.5}}\n")
    with pytest.raises(RecipeError) as info:
        resolve(load_recipe(write_recipe(both)), plugins.registry)
    assert "defaults.schedule.params.warmup_fraction" in str(info.value) and "not both" in str(info.value)
    one = both.replace("warmup_epochs: 2, ", "warmup_epochs: 0, ")
    cells = resolve(load_recipe(write_recipe(one)), plugins.registry)
    assert {c.parts["schedule"].params["warmup_fraction"] for c in cells} == {0.5}


def test_a_methods_own_components_keep_their_preset_values_unmarked_and_missing_parts_read_none(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    recipe = BASE.replace("  moco: {preset: moco}\n", "  byol: {preset: byol}\n")
    cells = resolve(load_recipe(write_recipe(recipe)), plugins.registry)
    rows = {cell.method: row for cell, row in zip(cells, method_differences(cells))}
    assert rows["simclr"]["predictor"] == "none" and rows["byol"]["predictor"] == "mlp"
    # the loss is named by each preset itself: its parameters are the preset's, not "kept" from it
    assert not any(key.startswith("loss.") and "(preset" in value for row in rows.values() for key, value in row.items())


def test_short_values_are_compact_json() -> None:
    from cmp.config.cell import short

    assert short({"a": [1, 2]}) == '{"a":[1,2]}' and short("text") == "text" and short("XL") == "XL"


def test_the_executor_is_the_recipes_or_local_with_its_parameters(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    from cmp.config.cells import resolve_executor

    default = resolve_executor(load_recipe(write_recipe(BASE)), plugins.registry)
    assert (default.name, default.params) == ("local", {"jobs": 1})
    jobs = resolve_executor(load_recipe(write_recipe(BASE + "executor: {params: {jobs: 2}}\n")), plugins.registry)
    assert (jobs.name, jobs.params) == ("local", {"jobs": 2})
    with pytest.raises(RecipeError, match=r"executor\.params\.jobs.*greater than 0"):
        resolve_executor(load_recipe(write_recipe(BASE + "executor: {params: {jobs: 0}}\n")), plugins.registry)


@pytest.mark.parametrize(("executor", "message"), [
    ("{name: lcoal}", "executor.name: unknown executor 'lcoal' (did you mean 'local'?); choices: local, ray"),
    ("{name: local, params: {jbos: 2}}", "executor.params.jbos: unknown key 'jbos' of executor 'local' (did you mean 'jobs'?); known: jobs"),
])
def test_a_bad_executor_is_one_error_at_its_key(write_recipe, plugins, executor: str, message: str) -> None:  # type: ignore[no-untyped-def]
    from cmp.config.cells import resolve_executor

    path = write_recipe(BASE + f"executor: {executor}\n")
    with pytest.raises(RecipeError) as caught:
        resolve_executor(load_recipe(path), plugins.registry)
    assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize(("sweep", "message"), [
    ("{loss.parms.temperature: [0.1]}", "sweep.loss.parms: unknown key 'parms' (did you mean 'params'?); known: name, params"),
    ("{train.bach_size: [16]}", "sweep.train.bach_size: unknown key 'bach_size' (did you mean 'batch_size'?); known: "
     "backend, batch_size, channels_last, checkpoint_minutes, collapse_std, compile, device, epochs, eval_every, "
     "eval_subset, log_every, micro_batch, precision, seed, steps, sync_batchnorm, threads"),
    ("{data.test_subset: [0]}", "sweep.data.test_subset: input should be greater than 0 (got 0)"),
    ("{train: [{epochs: 2}, {epochs: -1}]}", "sweep.train.epochs: input should be greater than or equal to 0 (got -1)"),
    ("{pairs: [symmetric], pairs.x: [1]}", "sweep.pairs.x: cannot set a key inside pairs, which is a str"),
    ("{train.epochs: [2], train.epochs.x: [1]}", "sweep.train.epochs.x: cannot set a key inside train.epochs, which is a int"),
    ("{method.simclr.x: [1]}", "sweep.method.simclr.x: unknown sweep key 'method' (did you mean 'methods'?); choices: "
     "augmentation, baselines, data, encoder, eval, joint_forward, loss, methods, negative_source, objective, optimizer, pairs, "
     "predictor, projection_head, schedule, target, train"),
    ("{loss.params: [3], loss.params.temperature: [0.1]}",
     "sweep.loss.params.temperature: cannot set a key inside loss.params, which is a int"),
])
def test_a_swept_key_that_does_not_fit_is_named_with_the_keys_beside_it(  # type: ignore[no-untyped-def]
    write_recipe, plugins, sweep: str, message: str,
) -> None:
    path = write_recipe(BASE + f"sweep: {sweep}\n")
    assert refusal(path, plugins.registry) == f"{path}: {message}"


@pytest.mark.parametrize(("loss", "message"), [
    ("{'name': 'nt_xent', 'parms': {}}", "plugin 'bad_preset': method preset 'barlow': loss.parms: unknown key 'parms' "
     "(did you mean 'params'?); known: name, params"),
    ("{'name': 'nt_xnet'}", "preset 'barlow'.loss.name: unknown loss 'nt_xnet' (did you mean 'nt_xent'?); "
     "choices: barlow_twins, cosine_regression, dcl, dclw, margin_triplet, moco_v3_infonce, negative_cosine, nt_logistic, nt_xent, vicreg"),
])
def test_a_preset_with_parts_that_do_not_fit_names_the_preset_and_the_key(  # type: ignore[no-untyped-def]
    write_recipe, plugins_with, loss: str, message: str,
) -> None:
    from cmp.errors import CmpError

    plugins = plugins_with(
        "bad_preset",
        "from cmp.api import MethodPreset\n"
        "from cmp_plugins.methods import SIMCLR\n\n\n"
        "def cmp_register_methods(register):\n"
        f"    register('barlow', MethodPreset({{**SIMCLR.parts, 'loss': {loss}}}, 'Barlow Twins'))\n",
    )
    path = write_recipe(BASE.replace("moco: {preset: moco}", "barlow: {preset: barlow}"))
    with pytest.raises(CmpError) as caught:
        resolve(load_recipe(path), plugins.registry)
    assert str(caught.value) == message


def test_a_value_two_methods_share_is_no_difference_whoever_set_it(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    both = BASE.replace("  simclr: {preset: simclr}\n  moco: {preset: moco}\n",
                        "  simclr: {preset: simclr, loss: {name: nt_xent, params: {temperature: 0.3}}}\n"
                        "  moco: {preset: moco, loss: {name: nt_xent, params: {temperature: 0.3}}}\n")
    cells = resolve(load_recipe(write_recipe(both)), plugins.registry)
    assert all("loss.temperature" not in row for row in method_differences(cells))


@pytest.mark.parametrize(("train", "method", "where", "message"), [
    ("device: cuda", "{preset: simclr}", "train.device", "'cuda' asked for, but CUDA is not available here"),
    ("device: mps", "{preset: simclr}", "train.device", "'mps' asked for, but MPS is not available here"),
    ("device: cpu", "{preset: simclr, predictor: {params: {hidden_dim: 8}}}", "methods.simclr.predictor",
     "sets parameters, but no projection head is chosen; add name:"),
])
def test_a_device_or_part_that_cannot_be_used_is_one_error_at_its_key(  # type: ignore[no-untyped-def]
    write_recipe, plugins, train: str, method: str, where: str, message: str,
) -> None:
    import torch

    if (train == "device: cuda" and torch.cuda.is_available()) or (train == "device: mps" and torch.backends.mps.is_available()):
        pytest.skip("the device is there")
    text = BASE.replace("batch_size: 32}", f"batch_size: 32, {train}}}").replace("  simclr: {preset: simclr}\n", f"  simclr: {method}\n")
    path = write_recipe(text)
    with pytest.raises(RecipeError) as info:
        resolve(load_recipe(path), plugins.registry)
    assert info.value.message == message and info.value.where == f"{path}: {where}"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_not_refused_when_another_machine_runs_the_cells(  # type: ignore[no-untyped-def]
    write_recipe, plugins,
) -> None:
    """Under `--executor ray` the cells run on the cluster's nodes, not on the machine that
    resolves the recipe (a head node without GPUs): the device is checked where each cell
    runs. The local executor runs them here, so it still refuses at once."""
    ray = BASE.replace("batch_size: 32}", "batch_size: 32, device: cuda}") + "executor: {name: ray}\n"
    assert {cell.train.device for cell in resolve(load_recipe(write_recipe(ray)), plugins.registry)} == {"cuda"}
    local = write_recipe(ray.replace("{name: ray}", "{name: local, params: {jobs: 2}}"), "local.yaml")
    assert refusal(local, plugins.registry) == f"{local}: train.device: 'cuda' asked for, but CUDA is not available here"


def test_a_part_named_none_is_left_out(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  moco: {preset: moco}\n", "  byol: {preset: byol, predictor: none}\n")
    byol = next(c for c in resolve(load_recipe(write_recipe(text)), plugins.registry) if c.method == "byol")
    assert byol.parts["predictor"] is None


REQUIRED_MARGIN = """\
import torch


def margin_loss(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *, margin: float) -> torch.Tensor:
    return (anchors - positives).pow(2).sum(1).mean() + margin


def cmp_register_losses(register):
    register("margin_loss", margin_loss)
"""

BANDED = """\
import torch
from cmp.api import ParamError


def banded(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *, low: float = 0.0,
           high: float = 1.0) -> torch.Tensor:
    return (anchors - positives).pow(2).sum(1).mean()


def check(params):
    if params["low"] >= params["high"]:
        raise ParamError((), "low must be below high")


def cmp_register_losses(register):
    register("banded", banded, check_params=check)
"""

CHECKED_DATA = """\
from cmp.api import ParamError
from cmp_plugins.datasets import digits


def check(params):
    if params["test_fraction"] > 0.5:
        raise ParamError(("test_fraction",), "would leave less than half to train on")


def cmp_register_datasets(register):
    register("checked_digits", digits, check_params=check)
"""


@pytest.mark.parametrize(("source", "written", "message"), [
    # a required parameter no layer sets: under the layer that chose the part
    (REQUIRED_MARGIN, ("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: margin_loss}"),
     "methods.simclr.loss.params.margin: required but missing"),
    # a check of the parameters together that names no key: the part's parameters
    (BANDED, ("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: {name: banded, params: {low: 2.0}}}"),
     "methods.simclr.loss.params: low must be below high"),
    # a data set's check: at data.params
    (CHECKED_DATA, ("data: {dataset: digits}", "data: {dataset: checked_digits, params: {test_fraction: 0.6}}"),
     "data.params.test_fraction: would leave less than half to train on"),
])
def test_a_third_party_components_parameters_that_do_not_fit_are_one_error_at_their_key(  # type: ignore[no-untyped-def]
    write_recipe, plugins_with, source: str, written: tuple[str, str], message: str,
) -> None:
    plugins = plugins_with("third_party", source)
    path = write_recipe(BASE.replace(*written))
    assert refusal(path, plugins.registry) == f"{path}: {message}"


def test_a_method_without_a_required_part_is_named_with_where_to_set_it(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(BASE.replace("simclr: {preset: simclr}", "simclr: {loss: nt_xent}"))
    assert refusal(path, plugins.registry) == (f"{path}: methods.simclr: no augmentation chosen: "
                                 "set methods.simclr.augmentation or defaults.augmentation, or use a preset")


def test_the_methods_differences_are_their_resolved_values_with_what_a_preset_kept(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    simclr, moco = method_differences(resolve(load_recipe(write_recipe(BASE)), plugins.registry))
    assert simclr == {"target": "shared", "target.stop_gradient": "false", "negative_source": "in_batch",
                      "negative_source.keys": "all", "loss.temperature": "0.5", "optimizer.lr": "0.1", "optimizer.lr_scaling": "none",
                      "schedule.warmup_epochs": "1.0", "pairs": "symmetric", "joint_forward": "true"}
    assert moco == {"target": "momentum", "negative_source": "queue", "loss.temperature": "0.2",
                    "optimizer.lr": "0.06 (preset 'moco')", "optimizer.weight_decay": "0.0005 (preset 'moco')",
                    "optimizer.lr_scaling": "linear (preset 'moco')", "schedule.warmup_epochs": "0.0",
                    "pairs": "one_way", "joint_forward": "false", "target.momentum": "0.99",
                    "target.schedule": "constant", "target.bn_shuffle_groups": "4", "negative_source.size": "4096"}


def test_a_grid_of_a_sweep_leaves_the_recipe_as_written_for_the_next_grid(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    cells = cells_of(write_recipe, plugins, "sweep:\n  - {train.batch_size: [16]}\n  - {train.epochs: [3]}\n")
    by_grid = {(c.train.batch_size, c.train.epochs) for c in cells}
    assert by_grid == {(16, 1), (32, 3)}  # the second grid at the recipe's batch size, the first at its epochs


def test_the_data_set_and_the_baselines_resolve_with_their_defaults(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    (cell, _) = resolve(load_recipe(write_recipe(BASE)), plugins.registry)
    assert cell.data.params == {"test_fraction": 0.2}  # digits' default, filled in at load
    assert [(b.slot, b.name, b.params, b.where) for b in cell.baselines] == [
        ("baselines", "raw_pixels", {}, "baselines.0"), ("baselines", "random_init", {}, "baselines.1")]


@pytest.mark.parametrize(("data", "message"), [
    ("{dataset: digts}", "data.dataset: unknown dataset 'digts' (did you mean 'digits'?); choices: cifar10, cifar100, "
     "digits, fashion_mnist, image_folder, image_shards, image_tree, stl10"),
    ("{dataset: digits, root: /nonexistent}", "data.root: directory '/nonexistent' does not exist"),
    ("{dataset: image_tree, root: /nonexistent}", "data.root: directory '/nonexistent' does not exist; "
     "it must hold train/<class>/ and val/<class>/ folders of images"),
    ("{dataset: image_tree, root: /tmp, params: {decode_on: gpu}}",
     "data.params.decode_on: input should be 'workers' or 'device' (got 'gpu')"),
])
def test_a_data_section_that_does_not_fit_is_one_error_at_its_key(  # type: ignore[no-untyped-def]
    write_recipe, plugins, data: str, message: str,
) -> None:
    path = write_recipe(BASE.replace("data: {dataset: digits}", f"data: {data}"))
    assert refusal(path, plugins.registry) == f"{path}: {message}"


def test_a_baseline_that_does_not_exist_is_named_at_its_place_in_the_list(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(BASE + "baselines: [raw_pixels, supervisd]\n")
    assert refusal(path, plugins.registry) == (f"{path}: baselines.1: unknown baseline 'supervisd' (did you mean 'supervised'?); "
                                 "choices: random_init, raw_pixels, supervised")


def test_a_cell_records_the_swept_values_that_apply_to_its_method(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    cells = cells_of(write_recipe, plugins, "sweep: {methods.moco.negative_source.params.size: [64, 128], train.seed: [0]}\n")
    simclr = [c.sweep for c in cells if c.method == "simclr"]
    moco = sorted((c.sweep for c in cells if c.method == "moco"), key=str)
    assert simclr == [{"train.seed": 0}]  # moco's queue size is not simclr's: one cell, not two
    assert moco == [{"methods.moco.negative_source.params.size": 128, "train.seed": 0},
                    {"methods.moco.negative_source.params.size": 64, "train.seed": 0}]


ONE_PAIR_LOSS = """\
import torch


def centroid_spread(anchors: torch.Tensor, positives: torch.Tensor, negatives: object) -> torch.Tensor:
    return -torch.linalg.svdvals(anchors + positives).sum()


def cmp_register_losses(register):
    register("centroid_spread", centroid_spread, one_pair=True, min_batch=4)
"""


@pytest.mark.parametrize(("method", "where", "shown"), [
    ("{preset: barlow_twins, pairs: symmetric}", "methods.simclr.pairs", "symmetric"),
    ("{preset: vicreg, pairs: multicrop}", "methods.simclr.pairs", "multicrop"),
    ("{preset: vicreg, pairs: [[0, 1], [1, 0]]}", "methods.simclr.pairs", "[[0, 1], [1, 0]]"),
    ("{preset: simclr, loss: vicreg}", "preset 'simclr'.pairs", "symmetric"),  # the preset's pairs, another loss
])
def test_a_loss_that_takes_one_pair_refuses_more_at_the_key_that_set_them(  # type: ignore[no-untyped-def]
    write_recipe, plugins, method: str, where: str, shown: str,
) -> None:
    path = write_recipe(BASE.replace("simclr: {preset: simclr}", f"simclr: {method}"))
    loss = "barlow_twins" if "barlow" in method else "vicreg"
    at = where if where.startswith("preset ") else f"{path}: {where}"
    assert refusal(path, plugins.registry) == (
        f"{at}: loss '{loss}' compares one view's batch with another's, so it takes one pair of views "
        f"(pairs: one_way), not {shown}"
    )


@pytest.mark.parametrize("preset", ["barlow_twins", "vicreg"])
def test_a_global_batch_below_two_is_refused_at_train_batch_size(write_recipe, plugins, preset: str) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(BASE.replace("batch_size: 32", "batch_size: 1").replace("simclr: {preset: simclr}", f"simclr: {{preset: {preset}}}"))
    assert refusal(path, plugins.registry) == (
        f"{path}: train.batch_size: loss '{preset}' needs a global batch of at least 2 images (it estimates "
        "statistics over the batch), got 1"
    )
    cells = resolve(load_recipe(path, ["train.batch_size=2"]), plugins.registry)
    assert {c.method for c in cells} == {"simclr", "moco"}


def test_one_pair_given_as_a_list_is_one_pair(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(BASE.replace("simclr: {preset: simclr}", "simclr: {preset: barlow_twins, pairs: [[1, 0]]}"))
    cell = next(c for c in resolve(load_recipe(path), plugins.registry) if c.method == "simclr")
    assert cell.step.pairs == ((1, 0),)


def test_what_a_loss_needs_is_declared_at_registration_not_known_by_name(write_recipe, plugins_with) -> None:  # type: ignore[no-untyped-def]
    plugins = plugins_with("third_party", ONE_PAIR_LOSS)
    method = "simclr: {preset: simclr, loss: centroid_spread, pairs: one_way}"
    path = write_recipe(BASE.replace("simclr: {preset: simclr}", method))
    assert {c.method for c in resolve(load_recipe(path), plugins.registry)} == {"simclr", "moco"}
    assert refusal(write_recipe(BASE.replace("simclr: {preset: simclr}", "simclr: {preset: simclr, loss: centroid_spread}")),
                   plugins.registry) == (
        "preset 'simclr'.pairs: loss 'centroid_spread' compares one view's batch with another's, so it takes one "
        "pair of views (pairs: one_way), not symmetric"
    )
    path = write_recipe(BASE.replace("batch_size: 32", "batch_size: 3").replace("simclr: {preset: simclr}", method))
    assert refusal(path, plugins.registry) == (
        f"{path}: train.batch_size: loss 'centroid_spread' needs a global batch of at least 4 images (it estimates "
        "statistics over the batch), got 3"
    )


def test_baselines_follow_the_named_method_only(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    recipe = BASE + "baselines: [raw_pixels, supervised]\nbaseline_method: moco\nsweep: {train.seed: [0, 1]}\n"
    cells = resolve(load_recipe(write_recipe(recipe)), plugins.registry)
    asking = {(c.method, c.train.seed): [b.name for b in c.baselines] for c in cells}
    assert asking == {("simclr", 0): [], ("simclr", 1): [], ("moco", 0): ["raw_pixels", "supervised"],
                      ("moco", 1): ["raw_pixels", "supervised"]}
    every = resolve(load_recipe(write_recipe(BASE + "baselines: [raw_pixels]\n")), plugins.registry)
    assert all([b.name for b in c.baselines] == ["raw_pixels"] for c in every)


def test_an_unknown_baseline_method_is_named_with_a_suggestion(write_recipe) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(BASE + "baseline_method: mocco\n"))
    assert "baseline_method" in str(caught.value) and "did you mean 'moco'" in str(caught.value)


def test_a_reference_is_checked_with_a_suggestion_and_is_no_part_of_a_cell_key(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(BASE + "reference: simcrl\n"))
    assert "reference" in str(caught.value) and "did you mean 'simclr'" in str(caught.value)
    plain = resolve(load_recipe(write_recipe(BASE)), plugins.registry)
    against = resolve(load_recipe(write_recipe(BASE + "reference: simclr\n")), plugins.registry)
    assert [c.key() for c in against] == [c.key() for c in plain]
