"""Plugin loading: built-ins as entry points, broken plugins, misspelt hooks, selection."""

from __future__ import annotations

import importlib.metadata as metadata
import types

import pytest

from cmp.errors import PluginError
from cmp.plugin_loader import load_plugins
from cmp.registry import SLOTS


def test_builtins_come_from_the_cmp_distribution_entry_points() -> None:
    loaded = load_plugins(plugins="none")
    assert {p.distribution for p in loaded.providers.values()} == {"cmp"}
    assert "nt_xent" in loaded.registry.names("losses")
    for slot in SLOTS:
        assert loaded.registry.names(slot), f"no built-in {slot}"
    assert loaded.registry.get("losses", "nt_xent").provider.plugin == "losses"


def test_a_plugin_that_fails_to_import_is_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.entry_points

    def with_broken(**kwargs: str):  # type: ignore[no-untyped-def]
        return [*real(**kwargs), metadata.EntryPoint("broken", "no_such_module_xyz", "cmp")]

    monkeypatch.setattr(metadata, "entry_points", with_broken)
    loaded = load_plugins()
    assert len(loaded.warnings) == 1
    assert "plugin 'broken'" in loaded.warnings[0] and "ModuleNotFoundError" in loaded.warnings[0]
    assert "nt_xent" in loaded.registry.names("losses")
    assert load_plugins(plugins="none").warnings == []  # not selected: not imported


def test_misspelt_hook_fails_naming_plugin_and_hook() -> None:
    typo = types.SimpleNamespace(cmp_register_loss=lambda register: None)
    with pytest.raises(PluginError) as info:
        load_plugins(plugins="none", extra_objects=[("typo", typo)])
    text = str(info.value)
    assert "plugin 'typo'" in text and "'cmp_register_loss' is not a cmp hook" in text
    assert "did you mean 'cmp_register_losses'" in text


def test_an_extra_plugin_registers_like_a_builtin() -> None:
    def cmp_register_losses(register):  # type: ignore[no-untyped-def]
        def cosine_distance(anchors, positives, negatives, *, scale: float = 1.0):  # type: ignore[no-untyped-def]
            """1 - cos."""
            return scale

        register("cosine_distance", cosine_distance)

    plugin = types.SimpleNamespace(cmp_register_losses=cmp_register_losses)
    loaded = load_plugins(plugins="none", extra_objects=[("mine", plugin)])
    component = loaded.registry.get("losses", "cosine_distance")
    assert component.provider.plugin == "mine" and component.schema.names() == ["scale"]  # type: ignore[union-attr]


def test_registering_a_builtin_name_again_is_an_error() -> None:
    def cmp_register_losses(register):  # type: ignore[no-untyped-def]
        register("nt_xent", lambda a, p, n: 0)

    with pytest.raises(PluginError, match=r"loss 'nt_xent' is registered twice: by cmp .* and by unpackaged \(plugin 'clash'\)"):
        load_plugins(plugins="none", extra_objects=[("clash", types.SimpleNamespace(cmp_register_losses=cmp_register_losses))])
