"""SwAV and DINO in cmp's training: the presets train through `cmp run`, their recipes
resolve, a run resumed from a mid-training checkpoint ends as the uninterrupted one
(prototypes, queue, centre, teacher and the frozen-parameter schedule restored), gradient
caching is exact in one process and refused clearly across processes, and a cell naming
both a loss and an objective is refused at load, naming the key."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import cmp.engine.build as build_module
import cmp.engine.trainer as trainer_module
from cmp.api.contracts import DataInfo
from cmp.api.loader import Plugins, load_plugins
from cmp.api.results import RunResult
from cmp.cli import main
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import build_model
from cmp.engine.grad_cache import cached_step
from cmp.engine.runner import SilentHooks
from cmp.engine.trainer import TrainConfig, Trainer
from cmp.errors import CmpError, RecipeError
from tests.helpers.objective_learners import PooledEncoder, batches, build, tensors

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("swav", "dino")


def cmp_register_encoders(register: Callable[..., Any]) -> None:
    register("pooled", lambda data: PooledEncoder(data.channels))


POOLED = types.SimpleNamespace(cmp_register_encoders=cmp_register_encoders)

TINY = """\
name: tiny
data: {dataset: digits}
train: {epochs: 2, batch_size: 16, seed: 3, device: cpu, log_every: 1}
defaults:
  encoder: pooled
  augmentation: {name: multicrop, params: {size: 4, local_size: 2, local_views: 2}}
  optimizer: {name: sgd, params: {lr: 0.5}}
methods:
  swav:
    preset: swav
    projection_head: {name: mlp, params: {hidden_dim: 16, out_dim: 8, batch_norm: false}}
    objective: {name: swav, params: {prototypes: 10, queue_size: 32, queue_start: 0.25, freeze_prototypes_until: 0.5}}
  dino:
    preset: dino
    projection_head: {name: dino, params: {hidden_dim: 16, bottleneck_dim: 6, out_dim: 10, freeze_last_layer: 0.5}}
    objective: {name: dino, params: {warmup: 0.5}}
baselines: []
"""
INFO = DataInfo("tiny", 1, 4, 4, 2, (0.5,), (0.25,))
IMAGES = 64


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins("none", extra_objects=[("pooled", POOLED)])


@pytest.fixture(scope="module")
def cells(plugins: Plugins, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cell]:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(TINY)
    return {cell.method: cell for cell in resolve(load_recipe(path), plugins.registry)}


def images() -> Tensor:
    return torch.randint(0, 256, (IMAGES, 1, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)


def trainer_for(plugins: Plugins, cell: Cell, path: Path) -> Trainer:
    model = build_model(cell, plugins.registry, INFO, steps_per_epoch=IMAGES // 16, device=torch.device("cpu"))
    return Trainer(model.learner, model.augmentation, images(), model.optimizer, model.schedule,
                   torch.Generator().manual_seed(0), TrainConfig(epochs=2, batch_size=16, log_every=1, checkpoint_seconds=0.0),
                   None, SilentHooks(), checkpoint_path=path)


@pytest.mark.parametrize("method", METHODS)
def test_a_run_resumed_mid_training_ends_as_the_uninterrupted_one(
    plugins: Plugins, cells: dict[str, Cell], method: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    saved: list[bytes] = []

    def save(path: Path, state: dict[str, Any]) -> None:  # every checkpoint, serialised as the file would be
        buffer = io.BytesIO()
        torch.save(state, buffer)
        saved.append(buffer.getvalue())

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    straight = trainer_for(plugins, cells[method], tmp_path / "a.pt")
    summary = straight.fit()
    assert summary.steps == 8
    states = [torch.load(io.BytesIO(blob), weights_only=True) for blob in saved]
    (at_step_3,) = [s for s in states if s["position"]["step"] == 3]  # mid first epoch: frozen, queue half full
    learner_state = at_step_3["learner"]
    assert learner_state["clock._extra_state"] == {"progress": 3 / 8}
    if method == "swav":
        assert learner_state["objective.queue.filled"].item() == 16  # started at step 2 (progress 0.25)
    else:
        assert learner_state["objective.center"].abs().sum() > 0

    resumed = trainer_for(plugins, cells[method], tmp_path / "b.pt")
    resumed.load_state_dict(at_step_3)
    assert resumed.learner.progress == 3 / 8  # type: ignore[attr-defined]
    again = resumed.fit()
    assert again.loss_per_epoch == summary.loss_per_epoch
    want, got = tensors(straight.learner.state_dict()), tensors(resumed.learner.state_dict())
    assert want.keys() == got.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("micro", [5, 16])
def test_gradient_caching_in_one_process_is_exact(method: str, micro: int) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        (views, ids), = batches(1, 16)
        whole = build(method)
        want = whole(views, ids)
        want.loss.backward()
        chunked = build(method)
        got = cached_step(chunked, chunked, views, ids, micro, contextlib.nullcontext, lambda loss: loss)
    finally:
        torch.set_default_dtype(torch.float32)
    assert got.loss.item() == pytest.approx(want.loss.item(), abs=1e-12)
    want_grads = {n: p.grad for n, p in whole.named_parameters() if p.grad is not None}
    got_grads = {n: p.grad for n, p in chunked.named_parameters() if p.grad is not None}
    assert want_grads.keys() == got_grads.keys() and len(want_grads) > 4
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-10, rtol=0, msg=name)
    assert got.batch is not None and want.batch is not None
    whole.after_step(want.batch, 0.5)
    chunked.after_step(got.batch, 0.5)
    for key, value in tensors(whole.state_dict()).items():
        torch.testing.assert_close(tensors(chunked.state_dict())[key], value, atol=1e-12, rtol=0, msg=key)


def test_gradient_caching_across_processes_is_refused_for_an_objective_with_parameters(
    plugins: Plugins, cells: dict[str, Cell], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_module, "world_size", lambda: 2)
    chunked = {m: dataclasses.replace(cells[m], train=cells[m].train.model_copy(update={"micro_batch": 4})) for m in METHODS}
    with pytest.raises(CmpError, match=r"objective 'swav' has parameters of its own \(prototypes.weight\).*"
                                       r"leave train.micro_batch out") as refused:
        build_model(chunked["swav"], plugins.registry, INFO, steps_per_epoch=4, device=torch.device("cpu"))
    assert refused.value.where == "train.micro_batch"
    build_model(chunked["dino"], plugins.registry, INFO, steps_per_epoch=4, device=torch.device("cpu"))  # no parameters of its own


def test_a_cell_with_a_loss_and_an_objective_is_refused_naming_the_key(plugins: Plugins, tmp_path: Path) -> None:
    recipe = tmp_path / "both.yaml"
    recipe.write_text(TINY.replace("    preset: swav\n", "    preset: swav\n    loss: nt_xent\n"))
    with pytest.raises(RecipeError, match=r"methods\.swav\.loss\.name.*loss 'nt_xent' is chosen beside objective 'swav' "
                                          r"\(at methods\.swav\.objective\.name\).*set loss: none, or objective: none"):
        resolve(load_recipe(recipe), plugins.registry)
    without = [line for line in TINY.splitlines() if not line.startswith("    objective: {name: swav")]
    recipe.write_text("\n".join(without).replace("    preset: swav\n", "    preset: swav\n    objective: none\n"))
    with pytest.raises(RecipeError, match=r"methods\.swav.*no loss chosen"):
        resolve(load_recipe(recipe), plugins.registry)


def test_a_cell_without_an_objective_keeps_its_key() -> None:
    """The `objective` part is written only when chosen: older cells' keys, and so their cached results, stand."""
    (cell,) = resolve(load_recipe(ROOT / "recipes" / "simclr.yaml"), load_plugins("none").registry)
    assert "objective" not in cell.config()["parts"] and "loss" in cell.config()["parts"]


PRESETS = """\
name: presets
data: {dataset: digits, subset: 512}
train: {epochs: 2, batch_size: 64, seed: 0, threads: 1, log_every: 4}
defaults:
  encoder: {name: convnet, params: {widths: [16, 32]}}
  augmentation: {name: multicrop, params: {local_views: 2, local_size: 4, global_scale: [0.5, 1.0], local_scale: [0.2, 0.5]}}
methods:
  swav:
    preset: swav
    projection_head: {name: mlp, params: {hidden_dim: 64, out_dim: 32}}
    objective: {name: swav, params: {prototypes: 30, queue_size: 192, queue_start: 0.25, freeze_prototypes_until: 0.125}}
  dino:
    preset: dino
    projection_head: {name: dino, params: {hidden_dim: 256, bottleneck_dim: 64, out_dim: 128, freeze_last_layer: 0.125}}
    optimizer: {name: adamw, params: {lr: 0.001, weight_decay: 0.04}}
eval: {knn: {k: 20}}
baselines: []
"""


def test_the_presets_train_through_cmp_run(tmp_path: Path) -> None:
    recipe = tmp_path / "presets.yaml"
    recipe.write_text(PRESETS)
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]) == 0
    results = {r.method: r for r in (RunResult.from_json(p.read_text()) for p in (tmp_path / "runs").glob("presets/*/result.json"))}
    assert results.keys() == {"swav", "dino"}
    for method, result in results.items():
        assert result.ok and result.train is not None, (method, result.reason)
        assert result.train.steps == 2 * (512 // 64)
        assert result.config["parts"]["loss"] is None and result.config["parts"]["objective"]["name"] == method
        assert 0 < result.metrics["knn_top1"] <= 1
    swav_losses = results["swav"].train.loss_per_epoch  # type: ignore[union-attr]
    assert swav_losses[1] < swav_losses[0], swav_losses


@pytest.mark.parametrize("method", METHODS)
def test_the_methods_recipe_resolves_to_its_preset(method: str) -> None:
    (cell,) = resolve(load_recipe(ROOT / "recipes" / f"{method}.yaml"), load_plugins("none").registry)
    assert cell.method == method and cell.parts["loss"] is None
    assert cell.part("objective").name == method and cell.step.pairs == "multicrop"
    assert cell.part("augmentation").name == "multicrop"
