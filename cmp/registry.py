"""The registry: every component a plugin registered, by slot and name.

A slot is one kind of part of a training step (encoder, loss, negative source...). The
engine looks components up by slot and name; it never knows which method they belong to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cmp.errors import PluginError, RecipeError
from cmp.params import ParamSchema, schema_of
from cmp.suggest import unknown_name


@dataclass(frozen=True)
class Slot:
    """A kind of component: `name` is the hook suffix, `noun` what one of them is called."""

    name: str
    noun: str
    doc: str


SLOTS: dict[str, Slot] = {
    s.name: s
    for s in (
        Slot("augmentations", "augmentation", "uint8 images -> augmented float views"),
        Slot("encoders", "encoder", "images -> representation h (what is evaluated)"),
        Slot("projection_heads", "projection head", "h -> z; predictors reuse this slot"),
        Slot("targets", "target branch", "where positives come from: shared or momentum"),
        Slot("negative_sources", "negative source", "negatives for each anchor"),
        Slot("losses", "loss", "(anchors, positives, negatives) -> scalar"),
        Slot("optimizers", "optimizer", "parameter groups -> torch optimizer"),
        Slot("schedules", "schedule", "learning-rate schedule over steps"),
        Slot("methods", "method preset", "named slot choices (simclr, moco, ...)"),
        Slot("datasets", "dataset", "labelled uint8 train/test images"),
        Slot("evaluators", "evaluator", "frozen features -> accuracy"),
    )
}

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


@dataclass(frozen=True)
class Component:
    """One registered component; `factory` builds it (presets hold data instead)."""

    slot: str
    name: str
    factory: Any
    provider: Provider
    schema: ParamSchema | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        if self.slot == "methods":
            return str(getattr(self.factory, "description", ""))
        doc = getattr(self.factory, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def build(self, *context: Any, **params: Any) -> Any:
        """Call the factory with the engine's context and validated parameters."""
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
        schema = None if slot == "methods" else schema_of(_callable(factory, label), label)
        component = Component(slot, name, factory, provider, schema, dict(meta))
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


def _callable(factory: Any, label: str) -> Callable[..., Any]:
    if not callable(factory):
        raise PluginError(f"{label}: factory {factory!r} is not callable")
    return factory
