"""The slot table, the hookspecs, the registry and the recipe schema agree."""

from __future__ import annotations

import inspect

from cmp.api.capabilities import CAPABILITIES
from cmp.api.hookspecs import RegistrationSpecs
from cmp.api.loader import Plugins
from cmp.api.slots import PARTS, SLOTS, STEP_OPTIONS, hook_name
from cmp.config.recipe import MethodSpec, Parts
from cmp.engine.build import BuildContext


def test_every_slot_has_exactly_one_registration_hookspec() -> None:
    specs = {name for name, _ in inspect.getmembers(RegistrationSpecs, inspect.isfunction) if name.startswith("cmp_register_")}
    assert specs == {hook_name(slot) for slot in SLOTS}


def test_the_recipe_schema_has_one_key_per_part_and_step_option() -> None:
    assert set(Parts.model_fields) == set(PARTS) | set(STEP_OPTIONS)
    assert set(MethodSpec.model_fields) == set(PARTS) | set(STEP_OPTIONS) | {"preset", "evaluate_only"}


def test_every_part_names_a_slot_and_context_the_builder_has() -> None:
    for part in PARTS.values():
        assert part.slot in SLOTS
        slot = SLOTS[part.slot]
        assert slot.kind in ("factory", "function")
        assert tuple(part.told) == slot.told, part.key  # the factory's arguments, named as the slot names them
        for name in part.told.values():
            assert hasattr(BuildContext, name) or name in BuildContext.__dataclass_fields__, (part.key, name)


def test_every_capability_a_slot_accepts_is_one_the_registry_knows() -> None:
    for slot in SLOTS.values():
        assert set(slot.capabilities) <= set(CAPABILITIES), slot.name
    assert SLOTS["methods"].capabilities == ()  # a preset is data: nothing to declare beside it


def test_each_factory_takes_what_its_slot_says_it_is_told(plugins: Plugins) -> None:
    for slot in SLOTS.values():
        for component in plugins.registry.components(slot.name):
            if slot.kind != "factory" or component.schema is None:
                continue
            assert len(component.schema.context) == len(slot.told), (slot.name, component.name, component.schema.context)


def test_the_registry_has_every_slot(plugins: Plugins) -> None:
    for slot in SLOTS:
        assert plugins.registry.names(slot), slot
