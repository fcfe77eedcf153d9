"""Plugin loading: built-ins listed in code, broken plugins, misspelt hooks, selection.

Selection of installed third-party plugins (`--plugins`, `CMP_PLUGINS`,
`CMP_DISABLE_PLUGIN_AUTOLOAD`) is tested with a real package in
`tests/examples/test_mmcr_package.py`.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmp.api import loader
from cmp.api.loader import BUILTIN_PLUGINS, load_plugins
from cmp.api.registry import SLOTS
from cmp.cli import main
from cmp.errors import PluginError


def test_builtins_are_listed_in_code_and_belong_to_cmp() -> None:
    loaded = load_plugins(plugins="none")
    assert list(loaded.providers) == list(BUILTIN_PLUGINS)
    assert {p.distribution for p in loaded.providers.values()} == {"cmp-compare"}
    assert "nt_xent" in loaded.registry.names("losses")
    for slot in SLOTS:
        assert loaded.registry.names(slot), f"no built-in {slot}"
    assert loaded.registry.get("losses", "nt_xent").provider.plugin == "losses"


@pytest.mark.third_party_plugins
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

    with pytest.raises(PluginError, match=r"loss 'nt_xent' is registered twice: by cmp-compare .* and by unpackaged \(plugin 'clash'\)"):
        load_plugins(plugins="none", extra_objects=[("clash", types.SimpleNamespace(cmp_register_losses=cmp_register_losses))])


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], str]]:
    """Write an importable plugin module into tmp_path; return its name for `cmp -p`."""
    written: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        ("cmp_register_loss(register)", "'cmp_register_loss' is not a cmp hook (did you mean 'cmp_register_losses'?)"),
        ("cmp_step_ends(run, step, metrics)", "'cmp_step_ends' is not a cmp hook (did you mean 'cmp_step_end'?)"),
        ("cmp_step_end(run, step, metric)",
         "cmp_step_end() takes 'metric', which the hook does not pass (did you mean 'metrics'?); "
         "it passes run, step, metrics"),
        ("cmp_register_losses(registr)",
         "cmp_register_losses() takes 'registr', which the hook does not pass (did you mean 'register'?)"),
    ],
)
def test_a_misspelt_hook_is_one_error_line_at_the_cli(
    plugin_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str], hook: str, expected: str
) -> None:
    name = plugin_module(
        f"typo_{hook.split('(')[0]}_{len(hook)}",
        f"""
        from cmp import hookimpl

        @hookimpl
        def {hook}:
            pass
        """,
    )
    assert main(["-p", name, "plugins", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"cmp: error: plugin '{name}': ") and expected in line


@pytest.mark.third_party_plugins
def test_a_plugin_that_fails_to_import_is_one_warning_line_at_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = metadata.entry_points

    def with_broken(**kwargs: str) -> list[metadata.EntryPoint]:
        return [*real(**kwargs), metadata.EntryPoint("broken", "no_such_module_xyz", "cmp")]

    monkeypatch.setattr(metadata, "entry_points", with_broken)
    assert main(["plugins", "--json", "--slot", "losses"]) == 0
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("cmp: warning: plugin 'broken'") and "ModuleNotFoundError" in line
    listing = json.loads(captured.out)
    assert len(listing["warnings"]) == 1 and "plugin 'broken'" in listing["warnings"][0]
    assert "nt_xent" in {c["name"] for c in listing["slots"]["losses"]}


def test_loading_an_installed_plugin_again_with_dash_p_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-p", "cmp_plugins.losses", "plugins"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "cmp: error: plugin 'cmp_plugins.losses': already loaded as cmp-compare 0.1.0 (plugin 'losses'); "
        "an installed plugin needs no -p"
    )


def test_a_builtin_that_fails_to_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "BUILTIN_PLUGINS", (*BUILTIN_PLUGINS, "no_such_builtin"))
    with pytest.raises(PluginError) as info:
        load_plugins(plugins="none")
    assert str(info.value).startswith("plugin 'no_such_builtin': cmp's built-in plugin failed to import: ModuleNotFoundError")


BLOCKED_INSTALL = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "cmp_plugins":
            raise ModuleNotFoundError("No module named 'cmp_plugins'", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from cmp.api.loader import load_plugins
loaded = load_plugins(plugins="none")
print(len(loaded.registry.names("losses")), sys.modules["cmp_plugins"].__path__[0])
"""


def test_a_source_checkout_without_installation_has_the_builtins() -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", BLOCKED_INSTALL], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, folder = done.stdout.split()
    assert int(count) >= 4 and Path(folder) == root / "plugins"


def test_a_dict_registered_as_a_method_preset_is_one_error_line(
    plugin_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = plugin_module(
        "dict_preset",
        """
        def cmp_register_methods(register):
            register("barlow", {"loss": "nt_xent"})
        """,
    )
    assert main(["-p", name, "plugins", "--slot", "methods"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line == (
        "cmp: error: plugin 'dict_preset' (unpackaged): method preset 'barlow' must be a "
        "cmp.api.MethodPreset(parts, description), got dict"
    )


def test_a_parameter_without_a_type_hint_names_the_plugin(
    plugin_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = plugin_module(
        "untyped_param",
        """
        def barlow(anchors, positives, negatives, *, lambd=0.005):
            return anchors.sum()

        def cmp_register_losses(register):
            register("barlow", barlow)
        """,
    )
    assert main(["-p", name, "plugins"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cmp: error: plugin 'untyped_param' (unpackaged): parameter 'lambd' of loss 'barlow' has no type hint")


def test_plugins_json_names_a_registered_function_by_its_qualified_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json", "--slot", "schedules"]) == 0
    listing = json.loads(capsys.readouterr().out)
    metas = {c["name"]: c.get("meta") for c in listing["slots"]["schedules"]}
    assert metas["cosine"] == metas["constant"] == {"check_params": "cmp_plugins.schedules.check_warmup"}
