"""The registry: every component a plugin registered, by slot and name.

A slot is one kind of part of a training step (encoder, loss, negative source...). The
engine looks components up by slot and name; it never knows which method they belong to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cmp.api.capabilities import Capabilities, read_capabilities
from cmp.api.contracts import MethodPreset
from cmp.api.params import ParamSchema, schema_of
from cmp.api.slots import PARTS, SLOTS, STEP_OPTIONS
from cmp.errors import PluginError, RecipeError
from cmp.suggest import did_you_mean, unknown_name

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Provider:
    """Who registered a component: the plugin (entry-point) name and its distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "unpackaged"
        return f"{dist} (plugin '{self.plugin}')"

    def where(self) -> str:
        """`plugin 'mmcr' (cmp-mmcr 0.1.0)`: where an error this plugin caused is."""
        dist = f"{self.distribution} {self.version}".strip() if self.distribution else "unpackaged"
        return f"plugin '{self.plugin}' ({dist})"


@dataclass(frozen=True)
class Component:
    """One registered component; `factory` builds it (presets hold data instead).

    `capabilities` are what it declared at registration (`needs_negatives=True`...),
    typed; `meta` the ones it named, by name, for display.
    """

    slot: str
    name: str
    factory: Any
    provider: Provider
    schema: ParamSchema | None
    capabilities: Capabilities = field(default_factory=Capabilities)

    @property
    def meta(self) -> dict[str, Any]:
        """The capabilities given to `register`, by name (what `cmp plugins` lists)."""
        return self.capabilities.declared()

    @property
    def description(self) -> str:
        if SLOTS[self.slot].kind == "preset":
            return str(getattr(self.factory, "description", ""))
        doc = getattr(self.factory, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def build(self, *context: Any, **params: Any) -> Any:
        """The component: the factory called with the engine's context and validated
        parameters, or for a function slot (losses) the function with its parameters bound."""
        if SLOTS[self.slot].kind == "function":
            return functools.partial(self.factory, **params)
        return self.factory(*context, **params)


class Registry:
    """Components by slot and name; duplicates and unknown names are errors."""

    def __init__(self) -> None:
        self._slots: dict[str, dict[str, Component]] = {name: {} for name in SLOTS}

    def add(
        self, slot: str, name: str, factory: Any, provider: Provider, **meta: Any
    ) -> Component:
        noun = SLOTS[slot].noun
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"{noun} name {name!r} must be lower-case letters, digits, '_' or '-'",
                where=f"plugin '{provider.plugin}'",
            )
        existing = self._slots[slot].get(name)
        if existing is not None:
            raise PluginError(
                f"{noun} '{name}' is registered twice: by {existing.provider} and by {provider}"
            )
        label = f"{noun} '{name}'"
        if SLOTS[slot].kind == "preset" and not isinstance(factory, MethodPreset):
            raise PluginError(
                f"{label} must be a cmp.api.MethodPreset(parts, description), got {type(factory).__name__}",
                where=provider.where(),
            )
        try:
            if SLOTS[slot].kind == "preset":
                check_preset(factory, label)
            schema = None if SLOTS[slot].kind == "preset" else schema_of(_callable(factory, label), label)
            capabilities = read_capabilities(meta, SLOTS[slot].capabilities, label, noun, _accepted_by())
        except PluginError as exc:  # name who registered it: the plugin and its distribution
            raise PluginError(exc.message, where=provider.where()) from None
        component = Component(slot, name, factory, provider, schema, capabilities)
        self._slots[slot][name] = component
        return component

    def get(self, slot: str, name: str, where: str | None = None) -> Component:
        found = self._slots[slot].get(name)
        if found is None:
            raise RecipeError(unknown_name(SLOTS[slot].noun, str(name), self._slots[slot]), where)
        return found

    def names(self, slot: str) -> list[str]:
        return sorted(self._slots[slot])

    def components(self, slot: str) -> Iterator[Component]:
        for name in self.names(slot):
            yield self._slots[slot][name]

    def registrar(self, slot: str, provider: Provider) -> Callable[..., Component]:
        """The `register(name, factory, **meta)` callable handed to one plugin's hook."""

        def register(name: str, factory: Any, **meta: Any) -> Component:
            return self.add(slot, name, factory, provider, **meta)

        register.__doc__ = f"Register a {SLOTS[slot].noun}: register(name, factory, **meta)."
        return register


def check_preset(preset: MethodPreset, label: str) -> None:
    """A preset's keys are a recipe's method keys (`PARTS`, `STEP_OPTIONS`), and a part's
    value is a name, a {name, params} mapping or None; the rest is checked with the recipe."""
    known = [*PARTS, *STEP_OPTIONS]
    for key, value in preset.parts.items():
        if key not in known:
            raise PluginError(f"{label}: unknown key '{key}'{did_you_mean(str(key), known)}; known: {', '.join(known)}")
        if key in PARTS and not (value is None or isinstance(value, (str, Mapping))):
            raise PluginError(f"{label}: {key} must be a component's name, {{name, params}} or None, "
                              f"got {type(value).__name__}")


@functools.cache
def _accepted_by() -> dict[str, list[str]]:
    """For each capability, the slots that accept it."""
    accepted: dict[str, list[str]] = {}
    for slot in SLOTS.values():
        for capability in slot.capabilities:
            accepted.setdefault(capability, []).append(slot.name)
    return accepted


def _callable(factory: Any, label: str) -> Callable[..., Any]:
    if not callable(factory):
        raise PluginError(f"{label}: factory {factory!r} is not callable")
    return factory
