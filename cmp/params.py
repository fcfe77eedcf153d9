"""Deprecated alias of `cmp.api.params`: the name `cmp.params` from before cmp 0.1.0.

Kept for the 0.x series so that code written against cmp before 0.1.0 keeps working: it
re-exports the parameter types of component factories, and importing it warns once with a
`DeprecationWarning` naming the new import. It goes in 1.0 (CHANGELOG.md; docs/plugins.md,
"What is public").
"""

from __future__ import annotations

import warnings

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

warnings.warn(
    "`cmp.params` is deprecated since cmp 0.1.0 and goes in 1.0: import from"
    " `cmp.api` (the module is now `cmp.api.params`)",
    DeprecationWarning,
    stacklevel=2,  # the importing line: warnings skips importlib's own frames
)
