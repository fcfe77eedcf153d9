"""Shared fixtures: the loaded plugins, and a writer for small recipes."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cmp.api.loader import Plugins, load_plugins

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _no_third_party_plugins(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed third-party cmp plugins stay out of a test unless it is marked
    `@pytest.mark.third_party_plugins` (as pytest's own suite disables plugin autoload)."""
    monkeypatch.delenv("CMP_PLUGINS", raising=False)
    if request.node.get_closest_marker("third_party_plugins") is None:
        monkeypatch.setenv("CMP_DISABLE_PLUGIN_AUTOLOAD", "1")
    else:
        monkeypatch.delenv("CMP_DISABLE_PLUGIN_AUTOLOAD", raising=False)


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    return load_plugins(plugins="none")


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text (dedented) to a recipe file and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
