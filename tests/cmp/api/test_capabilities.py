"""Capabilities declared at registration: accepted per slot, typed, misspellings refused."""

from __future__ import annotations

from typing import Any

import pytest

from cmp.api import MetricInfo, Plugins
from cmp.api.capabilities import Capabilities
from cmp.api.registry import Provider, Registry
from cmp.api.slots import SLOTS
from cmp.errors import PluginError

A = Provider("alpha", "alpha-dist", "1.0")


def loss(anchors, positives, negatives, *, temperature: float = 0.1):  # type: ignore[no-untyped-def]
    """A test loss."""


def evaluator(*, k: int = 5):  # type: ignore[no-untyped-def]
    """A test evaluator."""


def dataset(root, download, split_seed, *, size: int = 8):  # type: ignore[no-untyped-def]
    """A test data set."""


def check(params: dict[str, Any]) -> None:
    """Accepts everything."""


def test_a_component_declares_nothing_and_gets_every_default() -> None:
    component = Registry().add("losses", "plain", loss, A)
    assert component.capabilities == Capabilities()
    assert (component.capabilities.needs_negatives, component.capabilities.provides_negatives) == (False, True)
    assert component.capabilities.check_params is None and dict(component.capabilities.metrics) == {}
    assert component.meta == {}


def test_declared_capabilities_are_stored_typed_and_listed_by_name() -> None:
    registry = Registry()
    needy = registry.add("losses", "needy", loss, A, needs_negatives=True, check_params=check)
    assert needy.capabilities.needs_negatives is True and needy.capabilities.check_params is check
    assert needy.meta == {"check_params": check, "needs_negatives": True}
    knn = registry.add("evaluators", "knn", evaluator, A, during_training=True,
                       metrics={"top1": MetricInfo("kNN top-1"), "top5": "kNN top-5"})
    assert knn.capabilities.during_training is True
    assert knn.capabilities.metrics == {"top1": MetricInfo("kNN top-1"), "top5": MetricInfo("kNN top-5")}
    hinted = registry.add("datasets", "tree", dataset, A, root_hint=str.upper)
    assert hinted.capabilities.root_hint is str.upper
    silent = registry.add("negative_sources", "none", lambda dim: None, A, provides_negatives=False)
    assert silent.capabilities.provides_negatives is False


@pytest.mark.parametrize(("slot", "factory", "meta", "message"), [
    ("losses", loss, {"needs_negative": True},
     "loss 'x': unknown capability 'needs_negative' (did you mean 'needs_negatives'?); "
     "a loss takes check_params, needs_negatives"),
    ("losses", loss, {"during_training": True},
     "loss 'x': 'during_training' is not a capability of a loss but of evaluators; a loss takes check_params, "
     "needs_negatives"),
    ("evaluators", evaluator, {"needs_negatives": True},
     "evaluator 'x': 'needs_negatives' is not a capability of an evaluator but of losses; "
     "an evaluator takes check_params, during_training, metrics"),
    ("evaluators", evaluator, {"metric": {}},
     "evaluator 'x': unknown capability 'metric' (did you mean 'metrics'?)"),
    ("losses", loss, {"needs_negatives": "yes"}, "loss 'x': capability 'needs_negatives' must be True or False, got 'yes'"),
    ("losses", loss, {"needs_negatives": 1}, "loss 'x': capability 'needs_negatives' must be True or False, got 1"),
    ("losses", loss, {"check_params": "check"}, "loss 'x': capability 'check_params' must be a function, got str"),
    ("datasets", dataset, {"root_hint": 3}, "dataset 'x': capability 'root_hint' must be a function, got int"),
    ("evaluators", evaluator, {"metrics": ["top1"]},
     "evaluator 'x': capability 'metrics' must map each metric's name to a MetricInfo, got list"),
    ("evaluators", evaluator, {"metrics": {"top1": 0.5}},
     "evaluator 'x': capability 'metrics': metric 'top1' must be labelled by a MetricInfo or a string, got float"),
])
def test_a_capability_the_slot_does_not_take_or_of_the_wrong_type_names_the_plugin(
    slot: str, factory: Any, meta: dict[str, Any], message: str,
) -> None:
    with pytest.raises(PluginError) as caught:
        Registry().add(slot, "x", factory, A, **meta)
    assert caught.value.where == "plugin 'alpha' (alpha-dist 1.0)"
    assert caught.value.message.startswith(message), caught.value.message


def test_a_slot_that_takes_no_capability_says_so() -> None:
    from cmp.api import MethodPreset

    with pytest.raises(PluginError, match="method preset 'p': unknown capability 'lr'; a method preset takes none"):
        Registry().add("methods", "p", MethodPreset({}), A, lr=0.1)


def test_register_with_keywords_still_works_for_a_plugin(plugins: Plugins) -> None:
    registry = plugins.registry
    assert registry.get("losses", "nt_xent").capabilities.needs_negatives
    assert not registry.get("negative_sources", "none").capabilities.provides_negatives
    assert registry.get("evaluators", "knn").capabilities.during_training
    assert not registry.get("evaluators", "linear").capabilities.during_training
    assert registry.get("evaluators", "linear").capabilities.metrics["top1"] == MetricInfo("linear top-1")
    assert registry.get("schedules", "cosine").capabilities.check_params is not None
    assert registry.get("datasets", "image_tree").capabilities.root_hint is not None


def test_every_capability_some_slot_accepts_is_used_by_a_built_in(plugins: Plugins) -> None:
    accepted = {name for slot in SLOTS.values() for name in slot.capabilities}
    used = {name for slot in SLOTS for component in plugins.registry.components(slot) for name in component.meta}
    assert used == accepted
