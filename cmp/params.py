"""Deprecated: `cmp.params` before cmp 0.1.0, now `cmp.api.params` (see `cmp._moved`)."""

from __future__ import annotations

from cmp._moved import warn_moved
from cmp.api.params import (
    Fraction,
    FractionRange,
    NonNegative,
    NonNegativeInt,
    Param,
    ParamError,
    ParamSchema,
    Positive,
    PositiveInt,
    PositiveRange,
    Probability,
    describe_type,
    describe_validation_error,
    schema_of,
)

__all__ = [
    "Fraction", "FractionRange", "NonNegative", "NonNegativeInt", "Param", "ParamError", "ParamSchema",
    "Positive", "PositiveInt", "PositiveRange", "Probability", "describe_type",
    "describe_validation_error", "schema_of",
]

warn_moved("cmp.params", "import from `cmp.api` (the module is now `cmp.api.params`)")
