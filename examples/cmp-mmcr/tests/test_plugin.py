"""The installed package: found through its entry point, and its recipe resolves."""

from __future__ import annotations

from pathlib import Path

from cmp.api import load_plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipe.yaml"


def test_the_entry_point_registers_the_loss_and_the_preset() -> None:
    loaded = load_plugins(plugins="cmp-mmcr")
    loss = loaded.registry.get("losses", "mmcr")
    assert (loss.provider.distribution, loss.provider.version) == ("cmp-mmcr", "0.1.0")
    assert loss.schema is not None
    assert loss.schema.names() == ["local_weight"]
    assert loss.meta == {"one_pair": True}
    assert "mmcr" in loaded.registry.names("methods")


def test_the_recipe_resolves_to_mmcrs_parts() -> None:
    (cell,) = resolve(load_recipe(RECIPE), load_plugins(plugins="cmp-mmcr").registry)
    parts = cell.config()["parts"]
    assert parts["loss"] == {"name": "mmcr", "params": {"local_weight": 0.0}}
    assert parts["negative_source"]["name"] == "none"
    assert parts["target"]["name"] == "shared" and parts["predictor"] is None
    assert cell.config()["step"] == {"pairs": "one_way", "joint_forward": False}
