"""MoCo's negative source: a FIFO queue of past keys.

Keys are L2-normalised and detached as they enter a `cmp.nn.RingBuffer`. A batch that runs
past the end of the buffer wraps around to the start: every key of every batch is kept (a
batch larger than the queue keeps its last `size` keys). Until the queue is full only the
filled part is used as negatives. The ring buffer's rows, pointer and fill count are in
every checkpoint and restored on resume; a checkpoint written before the queue kept them
in a ring buffer (`keys`, `pointer`, `filled` at the top) still loads.
"""

from __future__ import annotations

from typing import Annotated, Any

import annotated_types as at
import torch
import torch.nn.functional as F

from cmp import hookimpl
from cmp.api.contracts import Negatives, NegativeSource, PairBatch
from cmp.api.hookspecs import Register
from cmp.nn import RingBuffer, gather_no_grad

QueueSize = Annotated[int, at.Ge(1), at.Le(1 << 20)]

_LEGACY_KEYS = {"keys": "past_keys.entries", "pointer": "past_keys.pointer", "filled": "past_keys.filled"}
"""Where the state of a queue saved before it used a ring buffer now lives."""


class QueueNegatives(NegativeSource):
    """The last `size` keys of earlier steps, oldest overwritten first."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.past_keys = RingBuffer(size, dim)
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    @property
    def size(self) -> int:
        """How many keys the queue holds once full."""
        return self.past_keys.size

    def negatives(self, batch: PairBatch) -> Negatives:
        return Negatives(self.past_keys.values())

    @torch.no_grad()
    def update(self, batch: PairBatch) -> None:
        """Enqueue the step's keys of every process (gathered in one process's order), so
        every process holds the same queue, the one a single process would hold."""
        self.enqueue(gather_no_grad(batch.keys, batch.key_views))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Push (n, dim) keys, L2-normalised and detached, at the end of the queue."""
        self.past_keys.push(F.normalize(keys.detach().float(), dim=1))

    def stats(self) -> dict[str, float]:
        return {"queue_fill": self.past_keys.count / self.past_keys.size}


def _rename_legacy_keys(module: Any, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for old, new in _LEGACY_KEYS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


def queue(dim: int, *, size: QueueSize = 4096) -> QueueNegatives:
    """FIFO queue of past keys (MoCo): K = size negatives once full."""
    return QueueNegatives(dim, size)


@hookimpl
def cmp_register_negative_sources(register: Register) -> None:
    register("queue", queue)
