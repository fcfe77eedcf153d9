"""The supervised baseline's key: what it trains on, not how the recipe spelled the budget."""

from __future__ import annotations

from pathlib import Path

from cmp.api.loader import Plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.engine.baselines import BaselineContext, baseline_key, baseline_specs
from cmp.engine.build import build
from cmp.engine.runner import Runner

RECIPE = """\
name: budget
data: {dataset: digits, subset: 256, test_subset: 64}
train: {epochs: 2, batch_size: 32}
defaults: {encoder: convnet, optimizer: sgd}
methods: {simclr: {preset: simclr}}
baselines: [supervised]
"""


def supervised_key(path: Path, plugins: Plugins, *overrides: str) -> str:
    (cell,) = resolve(load_recipe(path, list(overrides)), plugins.registry)
    (spec,) = baseline_specs([cell])
    return baseline_key(build(plugins.registry, spec.choice), BaselineContext(Runner(plugins, Path("unused")), spec))


def test_epochs_change_the_supervised_key_only_when_they_decide_the_budget(write_recipe, plugins) -> None:  # type: ignore[no-untyped-def]
    path = write_recipe(RECIPE)
    assert supervised_key(path, plugins, "train.steps=20") == supervised_key(path, plugins, "train.steps=20", "train.epochs=5")
    assert supervised_key(path, plugins, "train.steps=20") != supervised_key(path, plugins, "train.steps=30")
    assert supervised_key(path, plugins) != supervised_key(path, plugins, "train.epochs=5")
