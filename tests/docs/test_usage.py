"""docs/usage.md's example recipe is a valid recipe, resolved as `cmp run` would."""

from __future__ import annotations

import re
from pathlib import Path

from cmp.api.loader import Plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"


def test_the_usage_pages_recipe_is_valid(tmp_path: Path, plugins: Plugins) -> None:
    (block,) = re.findall(r"```yaml\n(.*?)```", USAGE.read_text(), flags=re.S)
    path = tmp_path / "usage.yaml"
    path.write_text(block)
    cells = resolve(load_recipe(path), plugins.registry)
    assert len(cells) == 2 * 3 * 2 * 3  # methods x batch sizes x losses x seeds
    moco = next(c for c in cells if c.method == "moco")
    assert moco.parts["optimizer"].params["lr_scaling"] == "none"
