"""Parameter schemas read from a component factory's signature.

A factory's positional parameters are what the engine passes (the data's channels, the
embedding size, the model's parameters...); its keyword-only parameters are what a
recipe may set. Each keyword-only parameter needs a type hint and may carry constraints
through `typing.Annotated` (the aliases below cover the usual ones), so a plugin's
parameters are validated exactly like the built-ins': unknown names, wrong types and
out-of-range values fail before anything is built, with the recipe key path.

Every number a recipe gives is checked beyond its type, wherever the int or float sits
(bare, in an alias, in a list or tuple): a boolean is not a number (`epochs: true` is a
mistake, not 1), a float must be finite (`lr: 1e309` is inf), and an int must lie within
+-`MAX_INT` (no size, count or seed is larger; an encoder width of 10^12 is a typo).

    def nt_xent(anchors, positives, negatives, *, temperature: Positive = 0.1): ...
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import pydantic
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, ConfigDict, create_model

from cmp.errors import PluginError
from cmp.suggest import did_you_mean


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"lower bound {pair[0]} is above upper bound {pair[1]}")
    return pair


MAX_INT = 2**31 - 1
"""The largest int a recipe may give (in magnitude): sizes, counts and seeds all fit."""


def _not_bool(value: Any) -> Any:
    """YAML's `true` is a bool, and pydantic would read it as 1: refuse it where a number belongs."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _bounded(value: int) -> int:
    if abs(value) > MAX_INT:
        raise ValueError(f"too large for any size, count or seed (at most +-{MAX_INT:,})")
    return value


_NUMBER = BeforeValidator(_not_bool)
_FINITE = AllowInfNan(False)
_BOUNDED = AfterValidator(_bounded)

Int = Annotated[int, _NUMBER, _BOUNDED]
"""An int that is no boolean and within +-`MAX_INT` (what every recipe int is checked as)."""
Float = Annotated[float, _NUMBER, _FINITE]
"""A finite float that is no boolean (what every recipe float is checked as)."""
Positive = Annotated[Float, at.Gt(0)]
"""A float > 0 (temperatures, learning rates)."""
PositiveInt = Annotated[Int, at.Gt(0)]
"""An int > 0 (sizes, counts)."""
NonNegative = Annotated[Float, at.Ge(0)]
"""A float >= 0 (weight decay, margins)."""
NonNegativeInt = Annotated[Int, at.Ge(0)]
"""An int >= 0 (warm-up epochs)."""
Probability = Annotated[Float, at.Ge(0), at.Le(1)]
"""A float in [0, 1]."""
Fraction = Annotated[Float, at.Gt(0), at.Le(1)]
"""A float in (0, 1] (crop scales, momentum bases)."""
FractionRange = Annotated[tuple[Fraction, Fraction], AfterValidator(_ordered)]
"""An ordered (low, high) pair inside (0, 1]."""
PositiveRange = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]
"""An ordered (low, high) pair of floats > 0."""

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """One recipe-settable parameter of a component."""

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> dict[str, Any]:
        """Name, readable type and default, as `cmp plugins` shows them."""
        return {
            "name": self.name,
            "type": describe_type(self.annotation),
            "default": None if self.required else _plain(self.default),
            "required": self.required,
        }


@dataclass(frozen=True)
class ParamSchema:
    """The engine-provided arguments and the recipe parameters of one factory."""

    label: str
    context: tuple[str, ...]
    params: tuple[Param, ...]
    model: type[pydantic.BaseModel]

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validated, coerced parameters; `ParamError` (with the parameter's path) otherwise."""
        try:
            model = self.model.model_validate(dict(values))
        except pydantic.ValidationError as exc:
            loc, message = describe_validation_error(exc, self.names(), self.label)
            raise ParamError(loc, message) from None
        return {p.name: getattr(model, p.name) for p in self.params}


class ParamError(ValueError):
    """A parameter that does not fit its schema; `loc` is its path below `params`."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(f"{'.'.join(loc)}: {message}")
        self.loc = loc
        self.message = message


_UNION_MEMBER = re.compile(r"^[a-z][a-z_-]*\[.*\]$")
"""pydantic's name for the member of a union an error was found in (`literal['a','b']`,
`list[int]`): part of its location, but no key a recipe writes."""


def describe_validation_error(
    exc: pydantic.ValidationError, known: list[str] | None = None, label: str = ""
) -> tuple[tuple[str, ...], str]:
    """pydantic's first error as (key path parts, one-line message)."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(str(part) for part in err["loc"] if not _UNION_MEMBER.match(str(part)))
    kind = err["type"]
    if kind == "extra_forbidden":
        name = loc[-1]
        hint = did_you_mean(name, known or [])
        known_list = ", ".join(known) if known else "none"
        owner = f" of {label}" if label else ""
        return loc, f"unknown key '{name}'{owner}{hint}; known: {known_list}"
    if kind == "missing":
        return loc, "required but missing"
    msg = err["msg"]
    msg = msg[0].lower() + msg[1:]
    if msg.startswith("value error, "):
        msg = msg[len("value error, ") :]
    return loc, f"{msg} (got {err.get('input')!r})"


def schema_of(factory: Callable[..., Any], label: str) -> ParamSchema:
    """Read a factory's signature; `PluginError` for an unannotated keyword parameter."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        signature = inspect.signature(factory)
        hints = typing.get_type_hints(target, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise PluginError(f"cannot read the signature of {label}: {exc}") from None
    context: list[str] = []
    params: list[Param] = []
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            if p.name not in hints:
                raise PluginError(
                    f"parameter '{p.name}' of {label} has no type hint; recipe parameters are validated by "
                    f"their hints (e.g. `{p.name}: float`, or an alias from cmp.api such as Positive)"
                )
            params.append(Param(p.name, hints[p.name], p.default))
        elif p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            context.append(p.name)
    fields: dict[str, Any] = {
        p.name: (checked_numbers(p.annotation), ... if p.required else p.default) for p in params
    }
    model = create_model(
        f"Params[{label}]",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return ParamSchema(label, tuple(context), tuple(params), model)


def checked_numbers(annotation: Any) -> Any:
    """`annotation` with every bare `int` and `float` in it (inside unions, lists, tuples,
    dicts, `Annotated`) replaced by `Int` / `Float`, so a third-party plugin's `width: int`
    is checked like cmp's own `PositiveInt`."""
    if annotation is int:
        return Int
    if annotation is float:
        return Float
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        base, *meta = args
        if _NUMBER in meta:
            return annotation
        arguments = (checked_numbers(base), *meta)
        return Annotated[arguments]
    if origin in (Union, types.UnionType):
        return Union[tuple(checked_numbers(a) for a in args)]
    if origin is None or origin is Literal or not args:
        return annotation
    try:
        return origin[tuple(a if a is Ellipsis else checked_numbers(a) for a in args)]
    except TypeError:  # a generic that cannot be subscripted again: validated as declared
        return annotation


_BOUNDS = {at.Gt: ">", at.Ge: ">=", at.Lt: "<", at.Le: "<="}


def describe_type(annotation: Any) -> str:
    """A short readable type: `float > 0`, `tuple[float > 0 <= 1, ...]`, `int | None`."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        bounds = []
        for m in meta:
            for cls, sign in _BOUNDS.items():
                if isinstance(m, cls):
                    bounds.append(f"{sign} {getattr(m, cls.__name__.lower())}")
        text = describe_type(base)
        return f"{text} {' '.join(bounds)}" if bounds else text
    if origin in (Union, types.UnionType):
        return " | ".join(describe_type(a) for a in get_args(annotation))
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else describe_type(a) for a in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _plain(value: Any) -> Any:
    """A default as YAML/JSON shows it (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
