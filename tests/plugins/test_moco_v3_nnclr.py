"""MoCo v3 and NNCLR through cmp equal their papers' steps written out by hand.

Each preset is resolved from a recipe and built by cmp (`build_model`), with its loss,
negative source, target and pairing as the preset names them and only BatchNorm-free
stand-ins for the encoder and heads (and plain SGD, so a step is theta - lr g). Three
steps through the learner, as the trainer runs them, are compared with a hand-written
step of the paper's pseudo-code on copies of the same initial weights: MoCo v3's
Algorithm 1 (Chen, Xie & He 2021) with the key encoder's EMA on the cosine schedule, and
NNCLR's eq. 2 (Dwibedi et al. 2021) with its support set as a plain list and a
brute-force nearest neighbour. Loss, every gradient, the parameters after each step, the
EMA copy and the support set must agree (float64).
"""

from __future__ import annotations

import copy
import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import DataInfo, Encoder
from cmp.api.loader import Plugins, load_plugins
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import Model, build_model
from cmp.errors import RecipeError

BATCH, STEPS, LR, SUPPORT = 8, 3, 0.5, 12
INFO = DataInfo("digits", 1, 4, 4, 10, (0.5,), (0.25,))

BN_FREE = """\
name: steps
data: {{dataset: digits}}
train: {{epochs: 1, batch_size: {batch}, seed: 0}}
methods:
  m:
    preset: {preset}
    encoder: flat_linear
    projection_head: {{name: mlp, params: {{hidden_dim: 16, out_dim: 8, batch_norm: false, last_batch_norm: false}}}}
    predictor: {{name: mlp, params: {{hidden_dim: 16, out_dim: 8, batch_norm: false}}}}
    optimizer: {{name: sgd, params: {{lr: {lr}, momentum: 0.0, weight_decay: 0.0}}}}
    schedule: constant
{extra}"""


class FlatLinear(Encoder):
    """Flatten, linear, ReLU: no BatchNorm, so any split of a batch gives the same outputs."""

    def __init__(self, data: DataInfo) -> None:
        super().__init__()
        self.feature_dim = 12
        self.linear = nn.Linear(data.channels * data.height * data.width, 12)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.linear(x.flatten(1)))


def flat_linear(data: DataInfo) -> FlatLinear:
    """A BatchNorm-free encoder for exact comparisons."""
    return FlatLinear(data)


@hookimpl
def cmp_register_encoders(register: Any) -> None:
    register("flat_linear", flat_linear)


TINY = types.SimpleNamespace(cmp_register_encoders=cmp_register_encoders)


@pytest.fixture(scope="module")
def loaded() -> Plugins:
    return load_plugins(plugins="none", extra_objects=[("tiny", TINY)])


def cell_for(loaded: Plugins, tmp_path: Path, preset: str, extra: str = "", batch: int = BATCH) -> Cell:
    recipe = tmp_path / f"{preset}.yaml"
    recipe.write_text(BN_FREE.format(preset=preset, extra=extra, lr=LR, batch=batch))
    (cell,) = resolve(load_recipe(recipe), loaded.registry)
    return cell


def built(loaded: Plugins, cell: Cell) -> Model:
    torch.set_default_dtype(torch.float64)
    try:
        return build_model(cell, loaded.registry, INFO, STEPS, torch.device("cpu"))
    finally:
        torch.set_default_dtype(torch.float32)


def inputs(step: int) -> tuple[list[Tensor], Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    views = [torch.randn(BATCH, 1, 4, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    return views, torch.randperm(1000, generator=g)[:BATCH]


def cmp_step(model: Model, views: list[Tensor], ids: Tensor, step: int) -> tuple[float, dict[str, Tensor]]:
    """One step as the trainer takes it: loss, backward, optimizer and schedule, components' updates."""
    model.optimizer.zero_grad(set_to_none=True)
    out = model.learner(views, ids)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.learner.named_parameters() if p.grad is not None}
    model.optimizer.step()
    assert model.schedule is not None
    model.schedule.step()
    model.learner.after_step(out.batch, (step + 1) / STEPS)
    return out.loss.item(), grads


def sgd(modules: list[nn.Module], lr: float) -> None:
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
                    p.grad = None


def assert_same_parameters(got: nn.Module, want: nn.Module, what: str) -> None:
    for (name, a), (_, b) in zip(got.named_parameters(), want.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=f"{what}.{name}")


def assert_same_gradients(got: dict[str, Tensor], module: nn.Module, prefix: str, scale: float) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(got[f"{prefix}.{name}"], p.grad * scale, atol=1e-12, rtol=0, msg=f"{prefix}.{name}")


# MoCo v3, Algorithm 1


def ctr(q: Tensor, k: Tensor, tau: float) -> Tensor:
    """Algorithm 1: logits = mm(q, k.t()) of the normalised q and k; CE(logits / tau, range(N)) * 2 tau."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T
    return F.cross_entropy(logits / tau, torch.arange(q.shape[0])) * 2 * tau


def test_moco_v3_preset_takes_the_authors_resnet_settings(loaded: Plugins, tmp_path: Path) -> None:
    recipe = tmp_path / "preset.yaml"
    recipe.write_text("name: p\ndata: {dataset: digits}\nmethods: {m: {preset: moco_v3}}\n")
    (cell,) = resolve(load_recipe(recipe), loaded.registry)
    parts = cell.config()["parts"]
    assert parts["target"] == {"name": "momentum", "params": {"momentum": 0.99, "schedule": "cosine", "bn_shuffle_groups": 1}}
    assert parts["negative_source"] == {"name": "in_batch", "params": {"keys": "positive_view"}}
    assert parts["loss"] == {"name": "moco_v3_infonce", "params": {"temperature": 1.0}}
    assert parts["optimizer"]["name"] == "lars" and parts["optimizer"]["params"]["lr"] == 0.6
    assert parts["projection_head"]["params"]["num_layers"] == 2 and parts["predictor"] is not None
    assert cell.config()["step"] == {"pairs": "symmetric", "joint_forward": False}


@pytest.mark.parametrize("tau", [1.0, 0.2])
def test_moco_v3_steps_equal_algorithm_1(loaded: Plugins, tmp_path: Path, tau: float) -> None:
    extra = f"    loss: {{name: moco_v3_infonce, params: {{temperature: {tau}}}}}\n"
    model = built(loaded, cell_for(loaded, tmp_path, "moco_v3", extra))
    f_q = copy.deepcopy(model.learner.online)  # encoder + projector, then the predictor
    predictor = copy.deepcopy(model.learner.predictor)
    assert predictor is not None
    f_k = copy.deepcopy(f_q)  # the momentum encoder starts as a copy
    for step in range(STEPS):
        views, ids = inputs(step)
        loss, grads = cmp_step(model, views, ids, step)

        x1, x2 = views
        q1, q2 = predictor(f_q(x1)), predictor(f_q(x2))
        with torch.no_grad():
            k1, k2 = f_k(x1), f_k(x2)
        reference = ctr(q1, k2, tau) + ctr(q2, k1, tau)
        reference.backward()
        # cmp averages the two pairs: its loss and gradients are half of Algorithm 1's
        assert 2 * loss == pytest.approx(reference.item(), abs=1e-12)
        assert_same_gradients(grads, f_q, "online", 0.5)
        assert_same_gradients(grads, predictor, "predictor", 0.5)
        assert not any(name.startswith("target.") for name in grads)  # no gradient reaches the key encoder
        sgd([f_q, predictor], LR * 0.5)
        m = 1 - 0.5 * (1 + math.cos(math.pi * (step + 1) / STEPS)) * (1 - 0.99)  # main_moco.py adjust_moco_momentum
        with torch.no_grad():
            for key, query in zip(f_k.parameters(), f_q.parameters()):
                key.copy_(key * m + query * (1 - m))

        assert_same_parameters(model.learner.online, f_q, "online")
        assert_same_parameters(model.learner.predictor, predictor, "predictor")
        assert_same_parameters(model.learner.target.network, f_k, "momentum encoder")
    assert model.learner.stats()["momentum"] == pytest.approx(1.0)  # the cosine schedule ends at 1


def test_moco_v3_compares_each_query_with_the_n_keys_of_the_other_view_only(loaded: Plugins, tmp_path: Path) -> None:
    model = built(loaded, cell_for(loaded, tmp_path, "moco_v3"))
    views, ids = inputs(0)
    out = model.learner(views, ids)
    negatives = model.learner.negative_source.negatives(out.batch)
    assert negatives.valid is not None
    assert negatives.valid.sum(dim=1).tolist() == [BATCH - 1] * (2 * BATCH)  # N - 1, not SimCLR's 2N - 2
    torch.testing.assert_close(negatives.bank, out.batch.positives)  # the keys k2 for q1's rows, then k1 for q2's


# NNCLR, eq. 2 with a support set


def nearest(queries: Tensor, support: list[Tensor]) -> Tensor:
    """Brute force: for each query the stored unit row of highest cosine similarity (the first on a tie)."""
    rows = []
    for q in F.normalize(queries.detach(), dim=1):
        cosines = [float(q @ s) for s in support]
        rows.append(support[cosines.index(max(cosines))])
    return torch.stack(rows)


def nnclr_term(nn_z: Tensor, p: Tensor, tau: float) -> Tensor:
    """Eq. 2 over a batch: -log exp(NN(z_i) . p_i / t) / sum_k exp(NN(z_i) . p_k / t), the mean over i."""
    logits = F.normalize(nn_z, dim=1) @ F.normalize(p, dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(p.shape[0]))


def test_nnclr_preset_takes_the_papers_settings(loaded: Plugins, tmp_path: Path) -> None:
    recipe = tmp_path / "preset.yaml"
    recipe.write_text("name: p\ndata: {dataset: digits}\nmethods: {m: {preset: nnclr}}\n")
    (cell,) = resolve(load_recipe(recipe), loaded.registry)
    parts = cell.config()["parts"]
    assert parts["target"] == {"name": "nearest_neighbour", "params": {"size": 98_304}}
    assert parts["loss"] == {"name": "nt_xent", "params": {"temperature": 0.1, "query": "positive"}}
    assert parts["negative_source"] == {"name": "in_batch", "params": {"keys": "anchor_view"}}
    assert parts["projection_head"]["params"] == {
        "hidden_dim": 2048, "out_dim": 256, "num_layers": 3, "batch_norm": True, "last_batch_norm": True,
        "fixed_lr": False}
    assert parts["predictor"]["params"]["hidden_dim"] == 4096


def test_nnclr_steps_equal_eq_2_with_a_support_set(loaded: Plugins, tmp_path: Path) -> None:
    tau = 0.1
    extra = f"    target: {{name: nearest_neighbour, params: {{size: {SUPPORT}}}}}\n"
    model = built(loaded, cell_for(loaded, tmp_path, "nnclr", extra))
    online = copy.deepcopy(model.learner.online)
    predictor = copy.deepcopy(model.learner.predictor)
    assert predictor is not None
    support: list[Tensor] = []  # the paper's queue: oldest first, the last SUPPORT rows kept
    for step in range(STEPS):  # 8 + 8 + 8 rows into 12: the third step searches a wrapped set
        views, ids = inputs(step)
        loss, grads = cmp_step(model, views, ids, step)

        x1, x2 = views
        z1, z2 = online(x1), online(x2)
        p1, p2 = predictor(z1), predictor(z2)
        if support:
            nn1, nn2 = nearest(z1, support), nearest(z2, support)
        else:  # nothing stored yet: each embedding stands for itself, without gradient
            nn1, nn2 = z1.detach(), z2.detach()
        reference = (nnclr_term(nn1, p2, tau) + nnclr_term(nn2, p1, tau)) / 2  # symmetrised, averaged
        reference.backward()
        assert loss == pytest.approx(reference.item(), abs=1e-12)
        assert_same_gradients(grads, online, "online", 1.0)
        assert_same_gradients(grads, predictor, "predictor", 1.0)
        sgd([online, predictor], LR)
        support = (support + list(F.normalize(z1.detach(), dim=1)))[-SUPPORT:]  # the first view's z, enqueued

        assert_same_parameters(model.learner.online, online, "online")
        assert_same_parameters(model.learner.predictor, predictor, "predictor")
        stored = model.learner.target.support
        assert stored.count == len(support)
        ring = torch.cat([stored.values()[stored.memory.pointer.item():], stored.values()[: stored.memory.pointer.item()]])
        torch.testing.assert_close(ring, torch.stack(support), atol=1e-12, rtol=0)
    assert model.learner.stats() == {"support_fill": 1.0}


def test_nnclr_positives_are_support_entries_without_gradient(loaded: Plugins, tmp_path: Path) -> None:
    extra = f"    target: {{name: nearest_neighbour, params: {{size: {SUPPORT}}}}}\n"
    model = built(loaded, cell_for(loaded, tmp_path, "nnclr", extra))
    views, ids = inputs(0)
    first = model.learner(views, ids)
    assert not first.batch.positives.requires_grad  # the first step's stand-ins are detached too
    model.learner.after_step(first.batch, 1 / STEPS)
    second = model.learner(*inputs(1))
    stored = model.learner.target.support.values()
    for row in second.batch.positives:
        assert any(torch.equal(row, entry) for entry in stored)
    assert not second.batch.positives.requires_grad


@pytest.mark.parametrize(
    ("extra", "batch", "key"),
    [
        ("    target: {name: nearest_neighbour, params: {size: 7}}\n", 8, "methods.m.target.params.size"),
        ("", 131_072, "preset 'nnclr'.target.params.size"),
    ],
    ids=["the recipe's size", "the preset's size"],
)
def test_a_support_set_smaller_than_the_batch_is_refused_at_load(
    loaded: Plugins, tmp_path: Path, extra: str, batch: int, key: str
) -> None:
    with pytest.raises(RecipeError) as refused:
        cell_for(loaded, tmp_path, "nnclr", extra, batch=batch)
    line = str(refused.value)
    assert "\n" not in line and key in line and "train.batch_size" in line, line


RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("method", ["moco_v3", "nnclr"])
def test_the_methods_recipe_resolves_to_its_preset(plugins: Plugins, method: str) -> None:
    (cell,) = resolve(load_recipe(RECIPES / f"{method}.yaml"), plugins.registry)
    assert cell.method == method and cell.part("target").where.startswith(("preset", "methods"))
    preset = plugins.registry.get("methods", method).factory.parts
    assert cell.part("loss").name == preset["loss"]["name"]
    assert cell.part("negative_source").params == preset["negative_source"]["params"]
    assert cell.part("target").name == preset["target"]["name"]
    if method == "nnclr":  # a support set of about a tenth of the training images, at least one batch
        assert cell.train.batch_size <= cell.part("target").params["size"] <= cell.data.subset // 8
