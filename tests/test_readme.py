"""The README's quick start: exactly two commands, the second being what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[0].endswith("cmp run recipes/simclr_vs_moco.yaml")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]


def test_every_recipe_is_described() -> None:
    readme = (ROOT / "README.md").read_text()
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        assert f"recipes/{recipe.name}" in readme, recipe.name
    assert not re.search(r"@[A-Z0-9]+@", readme), "an unfilled placeholder"


def test_the_readme_recipe_is_valid(tmp_path: Path, plugins) -> None:  # type: ignore[no-untyped-def]
    (block,) = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    cells = resolve(load_recipe(path), plugins.registry)
    assert len(cells) == 2 * 3 * 2 * 3
    moco = next(c for c in cells if c.method == "moco")
    assert moco.parts["optimizer"].params["lr_scaling"] == "none"
