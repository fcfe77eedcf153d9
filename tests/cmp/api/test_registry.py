"""The registry: unknown and duplicate names, parameter schemas from signatures."""

from __future__ import annotations

import pytest

from cmp.api.params import ParamError, Positive, describe_type
from cmp.api.registry import Provider, Registry
from cmp.errors import PluginError, RecipeError

A = Provider("alpha", "alpha-dist", "1.0")
B = Provider("beta", "beta-dist", "2.1")


def loss(anchors, positives, negatives, *, temperature: Positive = 0.1, margin: float = 1.0):  # type: ignore[no-untyped-def]
    """A test loss."""


def test_unknown_name_names_slot_choices_and_closest_match() -> None:
    registry = Registry()
    registry.add("losses", "nt_xent", loss, A)
    registry.add("losses", "margin_triplet", loss, A)
    with pytest.raises(RecipeError) as info:
        registry.get("losses", "nt_xnet", where="methods.m.loss.name")
    text = str(info.value)
    assert text.startswith("methods.m.loss.name: unknown loss 'nt_xnet'")
    assert "did you mean 'nt_xent'" in text and "choices: margin_triplet, nt_xent" in text


def test_duplicate_name_names_both_providers() -> None:
    registry = Registry()
    registry.add("losses", "nt_xent", loss, A)
    with pytest.raises(PluginError) as info:
        registry.add("losses", "nt_xent", loss, B)
    assert "alpha-dist 1.0 (plugin 'alpha')" in str(info.value)
    assert "beta-dist 2.1 (plugin 'beta')" in str(info.value)


def test_bad_component_names_and_untyped_parameters_are_plugin_errors() -> None:
    registry = Registry()
    with pytest.raises(PluginError, match="must be lower-case"):
        registry.add("losses", "Bad Name", loss, A)

    def untyped(*, x=1):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(PluginError, match="parameter 'x' of loss 'u' has no type hint") as info:
        registry.add("losses", "u", untyped, Provider("barlow", "cmp-barlow", "0.2.0"))
    assert info.value.where == "plugin 'barlow' (cmp-barlow 0.2.0)"


def test_schema_from_signature_validates_like_a_recipe() -> None:
    component = Registry().add("losses", "t", loss, A)
    schema = component.schema
    assert schema is not None
    assert schema.context == ("anchors", "positives", "negatives")
    assert schema.names() == ["temperature", "margin"]
    assert schema.validate({"margin": 2}) == {"temperature": 0.1, "margin": 2.0}
    with pytest.raises(ParamError) as info:
        schema.validate({"temperature": -1})
    assert info.value.loc == ("temperature",) and "greater than 0" in info.value.message
    with pytest.raises(ParamError, match="did you mean 'margin'"):
        schema.validate({"margn": 1})


def test_types_are_described_readably() -> None:
    assert describe_type(Positive) == "float > 0"
    assert describe_type(Positive | None) == "float > 0 | None"
    assert describe_type(tuple[int, ...]) == "tuple[int, ...]"


def test_bare_int_and_float_parameters_are_checked_like_cmps_own() -> None:
    def factory(*, width: int = 8, lr: float = 0.1, sizes: list[int] | None = None):  # type: ignore[no-untyped-def]
        """A third-party factory with plain type hints."""

    schema = Registry().add("evaluators", "plain", factory, A).schema
    assert schema is not None
    assert schema.validate({"width": 64, "lr": 1, "sizes": [1, 2]}) == {"width": 64, "lr": 1.0, "sizes": [1, 2]}
    for values, loc, message in [
        ({"width": True}, ("width",), "a boolean is not a number"),
        ({"width": 10**12}, ("width",), "too large for any size, count or seed"),
        ({"sizes": [4, 10**12]}, ("sizes", "1"), "too large"),
        ({"lr": "1e309"}, ("lr",), "finite number"),
        ({"lr": False}, ("lr",), "a boolean is not a number"),
    ]:
        with pytest.raises(ParamError) as info:
            schema.validate(values)
        assert info.value.loc == loc and message in info.value.message
    assert [p.describe()["type"] for p in schema.params] == ["int", "float", "list[int] | None"]
