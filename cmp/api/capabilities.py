"""What a component declares beside its factory when it registers, typed and checked.

`register(name, factory, needs_negatives=True)`: the keywords after the factory are the
component's capabilities. The slot table says which each slot accepts
(`cmp.api.slots.Slot.capabilities`); a keyword another slot takes, a misspelt one or a
value of the wrong type is a `PluginError` when the plugins load. The engine reads them
by attribute (`component.capabilities.needs_negatives`), never by string key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from cmp.api.results import MetricInfo
from cmp.errors import PluginError
from cmp.suggest import did_you_mean

CheckParams = Callable[[dict[str, Any]], None]
"""Checks a component's validated parameters together; raises `cmp.api.ParamError((name,),
message)` naming the parameter to blame."""

RootHint = Callable[[str], str]
"""`data.root` as written -> the end of the message saying what that folder should hold."""


@dataclass(frozen=True)
class Capabilities:
    """Every capability, with its default (what a component that does not declare it gets).

    check_params:       parameters wrong only together (any slot with parameters)
    needs_negatives:    a loss that cannot work without negatives (losses)
    one_pair:           a loss that takes one pair of views (`pairs: one_way`): its batch
                        statistics compare one view with the other (losses)
    min_batch:          the smallest global batch a loss works with, for its batch
                        statistics; None: any (losses)
    provides_negatives: False for a source that never gives any (negative sources)
    during_training:    cheap enough to run every `train.eval_every` epochs (evaluators)
    metrics:            how each metric it returns is labelled and shown (evaluators;
                        a plain string is read as `MetricInfo(label)`)
    root_hint:          what a missing `data.root` should hold (data sets)
    given:              the capabilities the plugin named (the others are defaults)
    """

    check_params: CheckParams | None = None
    needs_negatives: bool = False
    one_pair: bool = False
    min_batch: int | None = None
    provides_negatives: bool = True
    during_training: bool = False
    metrics: Mapping[str, MetricInfo] = field(default_factory=dict)
    root_hint: RootHint | None = None
    given: frozenset[str] = field(default=frozenset(), compare=False)

    def declared(self) -> dict[str, Any]:
        """The capabilities the plugin named, by name, as stored (what `cmp plugins` shows)."""
        return {name: getattr(self, name) for name in sorted(self.given)}


CAPABILITIES = tuple(f.name for f in fields(Capabilities) if f.name != "given")
"""Every capability's name."""


def read_capabilities(declared: Mapping[str, Any], accepted: Iterable[str], label: str, noun: str,
                      accepted_by: Mapping[str, list[str]]) -> Capabilities:
    """`declared` (the keywords given to `register` for `label`, a component of a slot
    whose components are called `noun`) checked and typed against what its slot
    `accepted`; `accepted_by` names, for each capability, the slots that take it (for the
    message when a plugin gives one to the wrong slot)."""
    allowed = tuple(accepted)
    values: dict[str, Any] = {}
    for name, value in declared.items():
        if name not in allowed:
            raise PluginError(f"{label}: {_unknown(name, allowed, noun, accepted_by)}")
        values[name] = _CHECKS[name](value, f"{label}: capability '{name}'")
    return Capabilities(**values, given=frozenset(values))


def _unknown(name: str, allowed: tuple[str, ...], noun: str, accepted_by: Mapping[str, list[str]]) -> str:
    one = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    takes = f"{one} takes {', '.join(allowed) if allowed else 'none'}"
    if name in accepted_by:
        return f"'{name}' is not a capability of {one} but of {', '.join(accepted_by[name])}; {takes}"
    return f"unknown capability '{name}'{did_you_mean(name, allowed)}; {takes}"


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise PluginError(f"{what} must be True or False, got {value!r}")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PluginError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


def _function(value: Any, what: str) -> Any:
    if not callable(value):
        raise PluginError(f"{what} must be a function, got {type(value).__name__}")
    return value


def _metrics(value: Any, what: str) -> dict[str, MetricInfo]:
    if not isinstance(value, Mapping):
        raise PluginError(f"{what} must map each metric's name to a MetricInfo, got {type(value).__name__}")
    labelled: dict[str, MetricInfo] = {}
    for metric, info in value.items():
        if isinstance(info, str):
            info = MetricInfo(info)
        if not isinstance(metric, str) or not isinstance(info, MetricInfo):
            raise PluginError(f"{what}: metric {metric!r} must be labelled by a MetricInfo or a string, "
                              f"got {type(info).__name__}")
        labelled[metric] = info
    return labelled


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "check_params": _function,
    "needs_negatives": _flag,
    "one_pair": _flag,
    "min_batch": _count,
    "provides_negatives": _flag,
    "during_training": _flag,
    "metrics": _metrics,
    "root_hint": _function,
}
