"""One generated image tree for the streaming tests, and an index cache folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cmp.streaming.images import make_tree


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/train/{ant,bee,cat} (40 readable images, one corrupt) and root/val/{ant,bee,cat}."""
    return make_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "index-cache"
