"""Method presets: typed parts, their keys checked against the slot table when they register."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cmp.api import ChoiceSpec, MethodPreset, Plugins, load_plugins
from cmp.api.registry import Provider, Registry
from cmp.api.slots import PARTS, STEP_OPTIONS
from cmp.errors import PluginError

A = Provider("alpha", "alpha-dist", "1.0")


def test_the_preset_type_says_what_each_value_may_be() -> None:
    parts = typing.get_type_hints(MethodPreset)["parts"]
    assert typing.get_origin(parts) is Mapping
    key, value = typing.get_args(parts)
    assert key is str
    assert set(typing.get_args(value)) == {str, ChoiceSpec, type(None), bool, Sequence[Sequence[int]]}
    assert typing.get_type_hints(ChoiceSpec) == {"name": str, "params": Mapping[str, Any]}


def test_every_key_of_a_built_in_preset_is_a_part_or_a_step_option(plugins: Plugins) -> None:
    for component in plugins.registry.components("methods"):
        assert set(component.factory.parts) <= set(PARTS) | set(STEP_OPTIONS), component.name


def test_a_preset_with_every_kind_of_value_registers() -> None:
    preset = MethodPreset({"encoder": "resnet18", "projection_head": {"name": "mlp", "params": {"out_dim": 8}},
                           "predictor": None, "pairs": [[0, 1]], "joint_forward": True}, "all kinds")
    assert Registry().add("methods", "kinds", preset, A).factory is preset


@pytest.mark.parametrize(("parts", "message"), [
    ({"encodr": "resnet18"}, "method preset 'p': unknown key 'encodr' (did you mean 'encoder'?); known: augmentation, "
                             "encoder, projection_head, predictor, target, negative_source, loss, objective, optimizer, schedule, "
                             "pairs, joint_forward"),
    ({"pair": "one_way"}, "method preset 'p': unknown key 'pair' (did you mean 'pairs'?)"),
    ({"temperature": 0.2}, "method preset 'p': unknown key 'temperature'; known: "),
    ({"loss": 0.5}, "method preset 'p': loss must be a component's name, {name, params} or None, got float"),
    ({"encoder": ["resnet18"]}, "method preset 'p': encoder must be a component's name, {name, params} or None, got list"),
])
def test_a_preset_key_or_part_that_cannot_be_is_refused_when_it_registers(parts: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError) as caught:
        Registry().add("methods", "p", MethodPreset(parts), A)
    assert caught.value.where == "plugin 'alpha' (alpha-dist 1.0)"
    assert caught.value.message.startswith(message), caught.value.message


class MisspeltPreset:
    """A plugin whose preset misspells a key: refused as the plugins load, naming the plugin."""

    @staticmethod
    def cmp_register_methods(register: Any) -> None:
        register("barlow", MethodPreset({"loss": "nt_xent", "negative_sourec": "none"}))


def test_the_loader_refuses_a_misspelt_preset_naming_the_plugin() -> None:
    with pytest.raises(PluginError) as caught:
        load_plugins("none", extra_objects=[("barlow_plugin", MisspeltPreset())])
    assert "barlow_plugin" in str(caught.value.where)
    assert "method preset 'barlow': unknown key 'negative_sourec' (did you mean 'negative_source'?)" in caught.value.message
