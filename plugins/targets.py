"""Target branches with shared weights: the positives are the online network's outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import TargetBranch
from cmp.api.hookspecs import Register


class SharedTarget(TargetBranch):
    """Positives are the online outputs z of the positive views (SimCLR).

    With `stop_gradient` they are detached, as SimSiam does with a predictor.
    """

    uses_online = True

    def __init__(self, stop_gradient: bool) -> None:
        super().__init__()
        self.stop_gradient = stop_gradient

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        return {v: online[v].detach() if self.stop_gradient else online[v] for v in which}


def shared(online: nn.Module, dim: int, *, stop_gradient: bool = False) -> SharedTarget:
    """Shared weights: positives come from the online network itself (SimCLR)."""
    return SharedTarget(stop_gradient)


@hookimpl
def cmp_register_targets(register: Register) -> None:
    register("shared", shared)
