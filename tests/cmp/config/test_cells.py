"""Sweeps: grids expand to cells, layer over the methods, and fail clearly."""

from __future__ import annotations

import pytest

from cmp.config.cells import resolve
from cmp.errors import RecipeError
from cmp.config.recipe import load_recipe

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
    assert moco["nt_xent"].parts["loss"].params == {"temperature": 0.2}  # the preset's
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
    ],
)
def test_bad_sweeps_name_the_sweep_key(write_recipe, plugins, sweep: str, fragments: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecipeError) as info:
        cells_of(write_recipe, plugins, sweep)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
