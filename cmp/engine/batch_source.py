"""Training batches made outside the trainer (a streamed data set), and their way to the device.

A `BatchSource` (`cmp.streaming.StreamingSource`) is asked for an epoch's batches with the
trainer's permutation (on the CPU) from the step training stands at, and yields this
process's rows of each global batch, decoded and cropped in worker processes; each is moved
to the device asynchronously (from pinned memory on a GPU). The order, the ids and the
resume point stay the trainer's, as for a data set held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import torch
from torch import Tensor

from cmp.errors import CmpError


class SourceBatch(Protocol):
    """One batch of a `BatchSource`: uint8 images (b, C, S, S) and their data-set ids (b,)."""

    images: Tensor
    ids: Tensor


class BatchSource(Protocol):
    """Training batches made outside the trainer, in the trainer's order.

    `epoch(epoch, perm, start_step)` yields, for steps `start_step` .. `len(self) //
    batch_size - 1`, this process's `local_batch` rows of the global batch
    `perm[step * batch_size : (step + 1) * batch_size]`, as `SourceBatch`es on the CPU.
    """

    batch_size: int
    local_batch: int

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, perm: Tensor, start_step: int = 0) -> Iterator[SourceBatch]: ...


def check_batch_sizes(source: BatchSource, batch_size: int, local_batch: int) -> None:
    """Refuse a source that gives other batches than the trainer steps on."""
    if source.batch_size != batch_size or source.local_batch != local_batch:
        raise CmpError(
            f"the batch source gives {source.local_batch} of {source.batch_size} images per step, the trainer "
            f"expects {local_batch} of {batch_size}", where="train.batch_size",
        )


def on_device(batches: Iterable[SourceBatch], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    """Each batch's images and ids on `device`, copied without blocking unless it is the CPU."""
    blocking = device.type == "cpu"
    for batch in batches:
        yield batch.images.to(device, non_blocking=not blocking), batch.ids.to(device, non_blocking=not blocking)
