"""The module names cmp had before 0.1.0 still import, re-export the same objects and warn.

`cmp.contracts`, `cmp.params`, `cmp.hookspecs` (a plugin's imports), `cmp.runner`
(`RunInfo`), and `cmp.plugin_loader`, `cmp.cells`, `cmp.recipe` (a plugin's tests) moved in
0.1.0. Each old name warns once, naming the new import, at the line that imports it; a
plugin written against them loads through its entry point as it did before.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import sys
import textwrap
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cmp.api.loader import load_plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.errors import CmpError

MOVED = {
    "cmp.contracts": ("cmp.api.contracts", "cmp.api"),
    "cmp.params": ("cmp.api.params", "cmp.api"),
    "cmp.hookspecs": ("cmp.api.hookspecs", "cmp.api"),
    "cmp.plugin_loader": ("cmp.api.loader", "cmp.api"),
    "cmp.runner": ("cmp.api.results", "cmp.api"),
    "cmp.cells": ("cmp.config.cells", "cmp.config.cells"),
    "cmp.recipe": ("cmp.config.recipe", "cmp.config.recipe"),
}
"""Old name -> (the module its objects come from, the import its warning names)."""

PUBLIC_BEFORE_0_1 = {
    "cmp.contracts": {"Augmentation", "DataInfo", "Encoder", "Evaluator", "Features", "Head", "ImageData", "Loss",
                      "MethodPreset", "NegativeSource", "Negatives", "PairBatch", "TargetBranch"},
    "cmp.params": {"Positive", "PositiveInt", "NonNegative", "NonNegativeInt", "Probability", "Fraction",
                   "FractionRange", "PositiveRange", "ParamError"},
    "cmp.hookspecs": {"hookspec", "Register", "RegistrationSpecs", "LifecycleSpecs"},
    "cmp.plugin_loader": {"load_plugins", "Plugins"},
    "cmp.runner": {"RunInfo"},
    "cmp.cells": {"resolve", "Cell"},
    "cmp.recipe": {"load_recipe", "Recipe"},
}
"""Names the 0.0 plugin guide and the example's tests imported from each (git show b491898^)."""


IMPORTER = "importer.py"


def fresh_import(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[types.ModuleType, list[warnings.WarningMessage]]:
    """`import name` on line 1 of a file called `IMPORTER`, as if for the first time in this
    process: the module and the warnings it gave."""
    monkeypatch.delitem(sys.modules, name, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(f"import {name}", IMPORTER, "exec"), {})
    return sys.modules[name], list(caught)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_re_exports_the_same_objects_and_warns_naming_the_new_import(
    old: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, advice = MOVED[old]
    module, caught = fresh_import(old, monkeypatch)
    (warning,) = caught
    assert warning.category is DeprecationWarning
    assert f"`{old}` is deprecated since cmp 0.1.0" in str(warning.message)
    assert f"from `{advice}`" in str(warning.message)
    assert (warning.filename, warning.lineno) == (IMPORTER, 1)  # the importing line, not the alias module
    assert PUBLIC_BEFORE_0_1[old] <= set(module.__all__)
    target = importlib.import_module(new)
    for name in module.__all__:
        assert getattr(module, name) is getattr(target, name), (old, name)


def test_an_old_name_warns_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_import("cmp.contracts", monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import cmp.contracts  # noqa: F401  (the second import: cached, silent)
        from cmp.contracts import MethodPreset  # noqa: F401
    assert caught == []


OLD_STYLE_PLUGIN = '''
    """A plugin written against cmp's module names from before 0.1.0."""

    import torch.nn.functional as F

    from cmp import hookimpl
    from cmp.contracts import MethodPreset
    from cmp.hookspecs import Register
    from cmp.params import Positive


    def scaled_cosine(anchors, positives, negatives, *, scale: Positive = 1.0):
        """scale * (1 - cos(anchor, positive)), averaged."""
        return scale * (1 - F.cosine_similarity(anchors, positives)).mean()


    @hookimpl
    def cmp_register_losses(register: Register) -> None:
        register("scaled_cosine", scaled_cosine)


    @hookimpl
    def cmp_register_methods(register: Register) -> None:
        register("old_style", MethodPreset({
            "augmentation": "simclr",
            "encoder": "convnet",
            "projection_head": {"name": "mlp", "params": {"hidden_dim": 64, "out_dim": 32}},
            "predictor": None,
            "target": "shared",
            "negative_source": "none",
            "loss": "scaled_cosine",
            "optimizer": "sgd",
            "schedule": "constant",
            "pairs": "symmetric",
            "joint_forward": False,
        }))
'''


@pytest.mark.third_party_plugins
def test_a_plugin_written_against_cmp_contracts_loads_through_its_entry_point_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_recipe: Callable[[str], Path]
) -> None:
    plugin_file = tmp_path / "old_style_plugin.py"
    plugin_file.write_text(textwrap.dedent(OLD_STYLE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "old_style_plugin", raising=False)
    for old in ("cmp.contracts", "cmp.hookspecs", "cmp.params"):
        monkeypatch.delitem(sys.modules, old, raising=False)
    real = metadata.entry_points

    def with_old_style(**kwargs: str) -> Any:
        if kwargs.get("group") != "cmp":
            return real(**kwargs)
        return [*real(**kwargs), metadata.EntryPoint("old_style", "old_style_plugin", "cmp")]

    monkeypatch.setattr(metadata, "entry_points", with_old_style)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_plugins(plugins="old_style")

    assert loaded.warnings == []  # before the aliases: "failed to import and was skipped"
    assert loaded.registry.get("losses", "scaled_cosine").provider.plugin == "old_style"
    deprecations = [w for w in caught if w.category is DeprecationWarning]
    named = sorted(str(w.message).split("`")[1] for w in deprecations)
    assert named == ["cmp.contracts", "cmp.hookspecs", "cmp.params"]
    assert {w.filename for w in deprecations} == {str(plugin_file)}  # the plugin's own import lines

    recipe = """
        name: old_style
        data: {{dataset: digits}}
        train: {{epochs: 1, batch_size: 32}}
        methods:
          old: {{preset: old_style, loss: {{name: scaled_cosine, params: {{scale: {scale}}}}}}}
        eval: {{knn: {{k: 5}}}}
        baselines: []
    """
    (cell,) = resolve(load_recipe(write_recipe(recipe.format(scale=2.0))), loaded.registry)
    assert cell.config()["parts"]["loss"] == {"name": "scaled_cosine", "params": {"scale": 2.0}}
    with pytest.raises(CmpError, match="scale"):  # cmp.params.Positive is the real constraint
        resolve(load_recipe(write_recipe(recipe.format(scale=-1.0))), loaded.registry)
