"""`cmp plugins`: every component per slot, with its parameters and provider, as text or JSON."""

from __future__ import annotations

import dataclasses
import json
import shutil
import textwrap
from typing import Any

from cmp.api.loader import Plugins
from cmp.api.registry import Component
from cmp.api.slots import SLOTS

NO_BREAK = "\u00a0"
"""Holds `[distribution version]` together when a description is wrapped."""


def plugin_listing(plugins: Plugins, slot: str | None = None) -> dict[str, Any]:
    """Every component per slot, with parameters and provider, as plain data."""
    slots = [slot] if slot else list(SLOTS)
    listing: dict[str, Any] = {
        "plugins": [
            {"name": p.plugin, "distribution": p.distribution, "version": p.version}
            for p in plugins.providers.values()
        ],
        "warnings": list(plugins.warnings),
        "slots": {},
    }
    for name in slots:
        entries = []
        for component in plugins.registry.components(name):
            entry: dict[str, Any] = {
                "name": component.name,
                "description": describe(component),
                "plugin": component.provider.plugin,
                "distribution": component.provider.distribution,
                "version": component.provider.version,
                "params": [p.describe() for p in component.schema.params] if component.schema else [],
            }
            if component.meta:
                entry["meta"] = json.loads(json.dumps(component.meta, default=_plain_meta))
            if SLOTS[name].kind == "preset":
                entry["parts"] = json.loads(json.dumps(dict(component.factory.parts), default=str))
            entries.append(entry)
        listing["slots"][name] = entries
    return listing


def describe(component: Component) -> str:
    """A component's description: the first paragraph of its docstring (or the preset's
    description), whole, so no sentence is cut where the docstring wraps its line."""
    if SLOTS[component.slot].kind == "preset":
        return component.description
    doc = textwrap.dedent(getattr(component.factory, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


def _plain_meta(value: Any) -> Any:
    """Registration metadata as JSON shows it (dataclasses such as `MetricInfo` as objects,
    functions such as a `check_params` by their qualified name)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return str(value)


def list_plugins(plugins: Plugins, slot: str | None, as_json: bool) -> int:
    """Print the listing (JSON, or a block per slot wrapped to the terminal); exit code 0."""
    listing = plugin_listing(plugins, slot)
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    columns = max(60, shutil.get_terminal_size((100, 24)).columns)
    for name, entries in listing["slots"].items():
        slot_info = SLOTS[name]
        told = f"factory({', '.join([*slot_info.told, '*, params'])})" if slot_info.kind == "factory" else slot_info.kind
        print(f"{name}  ({slot_info.doc}; {told}; chosen by {slot_info.recipe_key})")
        width = max((len(e["name"]) for e in entries), default=0)
        for e in entries:
            provider = f"{e['distribution'] or 'unpackaged'} {e['version'] or ''}".strip()
            text = textwrap.fill(
                f"{e['description']}  [{provider.replace(' ', NO_BREAK)}]", columns - 1,
                break_on_hyphens=False, break_long_words=False,
                initial_indent=f"  {e['name']:<{width}}  ", subsequent_indent=" " * (width + 4),
            )
            print(text.replace(NO_BREAK, " "))
            for p in e["params"]:
                default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
                print(f"{' ' * (width + 6)}{p['name']}: {p['type']}  ({default})")
        print()
    return 0
