"""The plugin guide (`docs/plugins.md`) and its reference (`docs/plugin-reference.md`) stay
true to the code they describe.

- every hookspec in `cmp.api.hookspecs` has a `### \\`name(args)\\`` heading in the
  reference's "Hook reference", with the spec's argument names (without `self`), and no
  heading documents a hook that does not exist;
- every code block of either page taken from a file (marked `<!-- snippet: PATH -->`)
  appears verbatim in that file, and every code block other than shell sessions and trees
  is such a snippet;
- every slot and every `RunInfo` field is described in the reference.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cmp.api.hookspecs
from cmp.api.registry import SLOTS
from cmp.engine.runner import RunInfo

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"
REFERENCE = ROOT / "docs" / "plugin-reference.md"
HOOK_HEADING = re.compile(r"^### `(?P<name>cmp_\w+)\((?P<args>[^)]*)\)`\s*$", re.M)
BLOCK = re.compile(r"(?:<!-- snippet: (?P<path>\S+) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)\n```", re.S)
UNCHECKED_LANGUAGES = {"console", "text"}


def pages() -> str:
    """Both pages' text, the guide's first."""
    return GUIDE.read_text(encoding="utf-8") + "\n" + REFERENCE.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The reference's text from the `## title` heading to the next `## ` heading."""
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def hookspecs() -> dict[str, Callable[..., Any]]:
    """Every function marked as a hook specification in `cmp.api.hookspecs`, by name."""
    specs = {}
    for _, owner in inspect.getmembers(cmp.api.hookspecs, inspect.isclass):
        for name, function in inspect.getmembers(owner, inspect.isfunction):
            if hasattr(function, "cmp_spec"):
                specs[name] = function
    return specs


def arguments(function: Callable[..., Any]) -> str:
    names = [p for p in inspect.signature(function).parameters if p != "self"]
    return ", ".join(names)


def test_hookspecs_are_found() -> None:
    specs = hookspecs()
    assert "cmp_register_losses" in specs and "cmp_step_end" in specs
    assert len(specs) == len(SLOTS) + 7  # one registration hook per slot, six lifecycle hooks, one report hook


def test_every_hookspec_is_documented_with_its_signature() -> None:
    documented: dict[str, str] = {}
    for match in HOOK_HEADING.finditer(section("Hook reference")):
        assert match["name"] not in documented, f"{match['name']} is documented twice"
        documented[match["name"]] = match["args"]
    expected = {name: arguments(function) for name, function in hookspecs().items()}
    missing = sorted(set(expected) - set(documented))
    unknown = sorted(set(documented) - set(expected))
    assert not missing, f"hooks missing from docs/plugin-reference.md's Hook reference: {missing}"
    assert not unknown, f"docs/plugin-reference.md documents hooks that do not exist: {unknown}"
    wrong = {name: (documented[name], args) for name, args in expected.items() if documented[name] != args}
    assert not wrong, f"documented (reference, spec) arguments differ: {wrong}"


def snippets() -> list[tuple[str, str]]:
    """(path, code) of every code block marked as taken from a file."""
    return [(m["path"], m["code"]) for m in BLOCK.finditer(pages()) if m["path"]]


def test_every_code_block_is_a_snippet_or_a_shell_session() -> None:
    blocks = list(BLOCK.finditer(pages()))
    assert blocks
    loose = [m["code"].splitlines()[0] for m in blocks if not m["path"] and m["lang"] not in UNCHECKED_LANGUAGES]
    assert not loose, f"code blocks without a <!-- snippet: PATH --> marker: {loose}"


@pytest.mark.parametrize(("path", "code"), snippets(), ids=lambda v: v if "\n" not in v else v.splitlines()[0][:40])
def test_a_snippet_is_the_files_own_code(path: str, code: str) -> None:
    source = ROOT / path
    assert source.is_file(), f"snippet source {path} does not exist"
    assert code in source.read_text(encoding="utf-8"), f"this snippet is not verbatim in {path}:\n{code}"


def test_the_example_packages_files_are_all_shown() -> None:
    shown = {path for path, _ in snippets()}
    example = "examples/cmp-mmcr/"
    for name in ("src/cmp_mmcr/loss.py", "src/cmp_mmcr/plugin.py", "pyproject.toml", "recipe.yaml", "tests/test_mmcr_loss.py"):
        assert example + name in shown


def test_every_slot_contract_is_described() -> None:
    text = section("The slots and their contracts")
    missing = [slot for slot in SLOTS if f"- `{slot}`:" not in text]
    assert not missing, f"slots without a contract in docs/plugin-reference.md: {missing}"


def test_every_run_info_field_is_described() -> None:
    text = section("Hook reference")
    missing = [f.name for f in dataclasses.fields(RunInfo) if f"`run.{f.name}`" not in text]
    assert not missing, f"RunInfo fields docs/plugin-reference.md does not describe: {missing}"
