"""The SimSiam, Barlow Twins and VICReg presets, each trained one step through cmp (recipe,
resolution, build, the `Trainer`'s step), equal that step written out from the papers'
pseudo-code and official code: the loss, the gradient of every parameter and the update
of every parameter. The networks are the preset's heads (BatchNorm included) on a tiny
BatchNorm-free encoder; the views come from a fixed, deterministic augmentation.

Also: SimSiam's predictor keeps its learning rate while the rest decays, and each
method's recipe in `recipes/` resolves to its preset.
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp.api.contracts import Augmentation, DataInfo, Encoder
from cmp.api.loader import Plugins, load_plugins
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import Model, build_model
from cmp.engine.runner import SilentHooks
from cmp.engine.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]
BATCH = 8
INFO = DataInfo("tiny", 1, 4, 4, 2, (0.5,), (0.25,))


class TinyEncoder(Encoder):
    """Flatten, linear, ReLU: no BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_dim = 6
        self.linear = nn.Linear(16, 6)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.linear(x.flatten(1)))


class FixedViews(Augmentation):
    """Two views with no randomness: the images scaled, and the same mirrored."""

    num_views = 2

    def preprocess(self, images: Tensor) -> Tensor:
        return images.to(torch.get_default_dtype()) / 255 - 0.5

    def forward(self, images: Tensor, generator: torch.Generator) -> list[Tensor]:
        x = self.preprocess(images)
        return [x, x.flip(-1)]


def cmp_register_encoders(register: Callable[..., Any]) -> None:
    register("tiny", lambda data: TinyEncoder())


def cmp_register_augmentations(register: Callable[..., Any]) -> None:
    register("fixed_views", lambda data: FixedViews())


TINY_PARTS = types.SimpleNamespace(
    cmp_register_encoders=cmp_register_encoders, cmp_register_augmentations=cmp_register_augmentations,
)

RECIPE = """\
name: one_step
data: {dataset: digits}
train: {epochs: 1, batch_size: 8, seed: 3, device: cpu, log_every: 1}
defaults:
  encoder: tiny
  augmentation: fixed_views
methods:
  simsiam:
    preset: simsiam
    projection_head: {name: mlp, params: {hidden_dim: 7, out_dim: 5}}
    predictor: {name: mlp, params: {hidden_dim: 3, out_dim: 5}}
  barlow_twins: {preset: barlow_twins, projection_head: {name: mlp, params: {hidden_dim: 7, out_dim: 5}}}
  vicreg: {preset: vicreg, projection_head: {name: mlp, params: {hidden_dim: 7, out_dim: 5}}}
baselines: []
"""


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins("none", extra_objects=[("tiny_parts", TINY_PARTS)])


@pytest.fixture(scope="module")
def cells(plugins: Plugins, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cell]:
    path = tmp_path_factory.mktemp("recipe") / "one_step.yaml"
    path.write_text(RECIPE)
    return {cell.method: cell for cell in resolve(load_recipe(path), plugins.registry)}


@pytest.fixture
def float64() -> Iterator[None]:
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def images() -> Tensor:
    return torch.randint(0, 256, (BATCH, 1, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)


# The papers' steps, written out. `net` is encoder + projector, `predictor` SimSiam's h.

def simsiam_loss(net: nn.Module, predictor: nn.Module, x1: Tensor, x2: Tensor) -> Tensor:
    """SimSiam, Algorithm 1: L = D(p1, z2) / 2 + D(p2, z1) / 2, D(p, z) = -cos(p, z.detach())."""
    z1, z2 = net(x1), net(x2)
    p1, p2 = predictor(z1), predictor(z2)

    def D(p: Tensor, z: Tensor) -> Tensor:  # noqa: N802 - the paper's name
        z = z.detach()
        p, z = F.normalize(p, dim=1), F.normalize(z, dim=1)
        return -(p * z).sum(dim=1).mean()

    return D(p1, z2) / 2 + D(p2, z1) / 2


def barlow_twins_loss(net: nn.Module, y1: Tensor, y2: Tensor, lambd: float = 5e-3) -> Tensor:
    """Barlow Twins, the official main.py: c = bn(z1).T @ bn(z2) / N, on-diagonal (1 - c_ii)^2
    plus lambda times the squared off-diagonal; bn is BatchNorm1d(affine=False) in training."""
    z1, z2 = net(y1), net(y2)

    def bn(z: Tensor) -> Tensor:
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + 1e-5)

    c = bn(z1).T @ bn(z2) / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def vicreg_loss(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """VICReg, the official main_vicreg.py forward, with 25 / 25 / 1."""
    x, y = net(x), net(y)
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 0.0001), torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    n, d = x.shape
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)

    def off_diagonal_squares(c: Tensor) -> Tensor:
        return c.pow(2).sum() - torch.diagonal(c).pow(2).sum()

    cov_loss = off_diagonal_squares(cov_x) / d + off_diagonal_squares(cov_y) / d
    return 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss


def sgd_update(param: Tensor, grad: Tensor, lr: float, weight_decay: float) -> Tensor:
    """The first SGD step with momentum (the buffer starts as the gradient): -lr (g + wd w)."""
    return -lr * (grad + weight_decay * param)


def lars_update(param: Tensor, grad: Tensor, lr: float, bias_lr: float, weight_decay: float, eta: float = 1e-3) -> Tensor:
    """The first step of the LARS of the Barlow Twins and VICReg code: biases and BN
    parameters (ndim 1) take -lr_b g; the rest -lr q (g + wd w), q = eta ||w|| / ||g + wd w||."""
    if param.ndim == 1:
        return -bias_lr * grad
    step = grad + weight_decay * param
    return -lr * (eta * param.norm() / step.norm()) * step


def train_one_step(plugins: Plugins, cell: Cell) -> tuple[Model, nn.Module, float]:
    """cmp's step: the model built from the cell, a copy of it before training, the loss."""
    model = build_model(cell, plugins.registry, INFO, steps_per_epoch=1, device=torch.device("cpu"))
    before = copy.deepcopy(model.learner)
    trainer = Trainer(model.learner, model.augmentation, images(), model.optimizer, model.schedule,
                      torch.Generator().manual_seed(0), TrainConfig(epochs=1, batch_size=BATCH, log_every=1),
                      None, SilentHooks())
    summary = trainer.fit()
    assert summary.steps == 1
    return model, before, summary.loss_per_epoch[0]


SCALE = BATCH / 256  # lr_scaling: linear
CASES: dict[str, dict[str, Any]] = {
    # the batch is the 8 images in the trainer's permuted order; every loss here is a mean or a
    # statistic over rows, so the order of rows (the same in both views) does not change it
    "simsiam": {
        "loss": lambda ref, v1, v2: simsiam_loss(ref.online, ref.predictor, v1, v2),
        # cosine schedule without warm-up: the first step is at the full rate 0.05 x B / 256, weight
        # decay 1e-4 on every parameter (the official code's SGD)
        "update": lambda name, w, g: sgd_update(w, g, 0.05 * SCALE, 1e-4),
    },
    "barlow_twins": {
        "loss": lambda ref, v1, v2: barlow_twins_loss(ref.online, v1, v2),
        # a one-step budget makes the 10-epoch warm-up one step long: the first step is at the
        # full rate (the code's warm-up would start from 0: its rate at step s is s / w, cmp's (s + 1) / w)
        "update": lambda name, w, g: lars_update(w, g, 0.2 * SCALE, 0.0048 * SCALE, 1.5e-6),
    },
    "vicreg": {
        "loss": lambda ref, v1, v2: vicreg_loss(ref.online, v1, v2),
        "update": lambda name, w, g: lars_update(w, g, 0.2 * SCALE, 0.2 * SCALE, 1e-6),
    },
}


@pytest.mark.parametrize("method", list(CASES))
def test_one_step_through_cmp_is_the_papers_step(plugins: Plugins, cells: dict[str, Cell], float64: None, method: str) -> None:
    model, reference, loss = train_one_step(plugins, cells[method])
    case = CASES[method]
    v1, v2 = FixedViews()(images(), torch.Generator())
    want = case["loss"](reference, v1, v2)
    want.backward()
    assert loss == pytest.approx(want.item(), rel=1e-10, abs=1e-12)

    trained = dict(model.learner.named_parameters())
    start = dict(reference.named_parameters())
    compared = 0
    for name, param in start.items():
        if not param.requires_grad:
            continue
        got = trained[name]
        if param.grad is None:  # never reached by the loss (none here but a frozen copy)
            assert got.grad is None, name
            continue
        assert got.grad is not None, name
        torch.testing.assert_close(got.grad, param.grad, rtol=1e-9, atol=1e-12, msg=f"gradient of {name}")
        update = case["update"](name, param.detach(), param.grad)
        torch.testing.assert_close(got.detach() - param.detach(), update, rtol=1e-9, atol=1e-15, msg=f"update of {name}")
        compared += 1
    assert compared == len([p for p in start.values() if p.requires_grad])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in start.items() if n.startswith("online.encoder"))


def test_simsiams_predictor_keeps_its_learning_rate_while_the_rest_decays(plugins: Plugins, cells: dict[str, Cell]) -> None:
    model = build_model(cells["simsiam"], plugins.registry, INFO, steps_per_epoch=20, device=torch.device("cpu"))
    predictor = {id(p) for p in model.learner.predictor.parameters()}  # type: ignore[union-attr]
    groups = model.optimizer.param_groups
    of_predictor = [all(id(p) in predictor for p in g["params"]) for g in groups]
    assert [bool(g.get("fixed_lr")) for g in groups] == of_predictor and any(of_predictor) and not of_predictor[0]
    assert {id(p) for g, mine in zip(groups, of_predictor) if mine for p in g["params"]} == predictor
    assert all(g["weight_decay"] == 1e-4 for g in groups)  # biases and BN too, as the official code
    base = 0.05 * SCALE
    for step in range(20):
        for group, fixed in zip(groups, of_predictor):
            want = base if fixed else base * 0.5 * (1 + math.cos(math.pi * step / 20))
            assert group["lr"] == pytest.approx(want, rel=1e-12), (step, fixed)
        model.optimizer.step()
        model.schedule.step()
    assert groups[0]["lr"] < base / 100


@pytest.mark.parametrize("method", ["simsiam", "barlow_twins", "vicreg"])
def test_the_methods_recipe_resolves_to_its_preset(method: str) -> None:
    plugins = load_plugins("none")
    (cell,) = resolve(load_recipe(ROOT / "recipes" / f"{method}.yaml"), plugins.registry)
    assert cell.method == method
    assert all(choice is None or choice.where.startswith(("preset ", "defaults", "methods"))
               for choice in cell.parts.values())
    assert cell.part("loss").name == {"simsiam": "negative_cosine", "barlow_twins": "barlow_twins", "vicreg": "vicreg"}[method]
    assert cell.step.pairs == ("symmetric" if method == "simsiam" else "one_way")
