"""The installed package: found through its entry point, and its recipe resolves."""

from __future__ import annotations

from pathlib import Path

from cmp.api import load_plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipe.yaml"


def test_the_entry_point_registers_the_loss_and_the_preset() -> None:
    loaded = load_plugins(plugins="cmp-vicreg")
    loss = loaded.registry.get("losses", "vicreg")
    assert (loss.provider.distribution, loss.provider.version) == ("cmp-vicreg", "0.1.0")
    assert loss.schema is not None
    assert loss.schema.names() == ["invariance_weight", "variance_weight", "covariance_weight", "target_std", "eps"]
    assert not loss.meta.get("needs_negatives", False)
    assert "vicreg" in loaded.registry.names("methods")


def test_the_recipe_resolves_to_vicregs_parts() -> None:
    (cell,) = resolve(load_recipe(RECIPE), load_plugins(plugins="cmp-vicreg").registry)
    parts = cell.config()["parts"]
    assert parts["loss"]["name"] == "vicreg" and parts["negative_source"]["name"] == "none"
    assert parts["target"]["name"] == "shared" and parts["predictor"] is None
    assert parts["projection_head"]["params"]["num_layers"] == 3
    assert cell.config()["step"] == {"pairs": "one_way", "joint_forward": False}
