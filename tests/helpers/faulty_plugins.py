"""A plugin module for tests (`cmp -p tests.helpers.faulty_plugins`): a loss that turns NaN."""

from __future__ import annotations

from torch import Tensor

from cmp import hookimpl
from cmp.contracts import Negatives
from cmp.hookspecs import Register
from cmp.params import NonNegativeInt


def nan_after(anchors: Tensor, positives: Tensor, negatives: Negatives | None, *, calls: NonNegativeInt = 0) -> Tensor:
    """A loss that is finite for `calls` calls, then NaN."""
    nan_after.count = getattr(nan_after, "count", 0) + 1  # type: ignore[attr-defined]
    loss = (anchors - positives).square().mean()
    return loss * float("nan") if nan_after.count > calls else loss  # type: ignore[attr-defined]


@hookimpl
def cmp_register_losses(register: Register) -> None:
    register("nan_after", nan_after)
