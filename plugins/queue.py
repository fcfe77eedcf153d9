"""MoCo's negative source: a FIFO queue of past keys.

Keys are L2-normalised and detached as they enter. A batch that runs past the end of the
buffer wraps around to the start: every key of every batch is kept (a batch larger than
the queue keeps its last `size` keys). Until the queue is full only the filled part is
used as negatives. The buffer, the write pointer and the fill count are buffers of this
module, so they are in every checkpoint and restored on resume. The pointer and fill are
mirrored as Python ints so that no step waits on the device to read them.
"""

from __future__ import annotations

from typing import Annotated, Any

import annotated_types as at
import torch
import torch.nn.functional as F

from cmp import hookimpl
from cmp.contracts import Negatives, NegativeSource, PairBatch
from cmp.hookspecs import Register

QueueSize = Annotated[int, at.Ge(1), at.Le(1 << 20)]


class QueueNegatives(NegativeSource):
    """The last `size` keys of earlier steps, oldest overwritten first."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._pointer = 0
        self._filled = 0
        self.register_load_state_dict_post_hook(_sync_counters)

    def negatives(self, batch: PairBatch) -> Negatives:
        return Negatives(self.keys[: self._filled])

    @torch.no_grad()
    def update(self, batch: PairBatch) -> None:
        self.enqueue(batch.keys)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write normalised, detached keys at the pointer, wrapping around the end."""
        keys = F.normalize(keys.detach().float(), dim=1)[-self.size :]
        n = keys.shape[0]
        first = min(n, self.size - self._pointer)
        self.keys[self._pointer : self._pointer + first] = keys[:first]
        if n > first:
            self.keys[: n - first] = keys[first:]
        self._pointer = (self._pointer + n) % self.size
        self._filled = min(self.size, self._filled + n)
        self.pointer.fill_(self._pointer)
        self.filled.fill_(self._filled)

    def stats(self) -> dict[str, float]:
        return {"queue_fill": self._filled / self.size}


def _sync_counters(module: Any, incompatible: Any) -> None:
    module._pointer = int(module.pointer)
    module._filled = int(module.filled)


def queue(dim: int, *, size: QueueSize = 4096) -> QueueNegatives:
    """FIFO queue of past keys (MoCo): K = size negatives once full."""
    return QueueNegatives(dim, size)


@hookimpl
def cmp_register_negative_sources(register: Register) -> None:
    register("queue", queue)
