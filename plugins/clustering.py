"""SwAV's objective (Caron et al. 2020): swapped prediction of online cluster codes.

Each embedding z is L2-normalised and scored against K learnable prototypes c_k (unit
vectors: the official code normalises them in place before every step); the scores of
each *global* view, without gradient, become soft codes q by Sinkhorn-Knopp over the
global batch (3 iterations, epsilon 0.05), and every other view predicts them:

    loss = - mean over pairs (i, j) and images n of  sum_k q_jnk log softmax(z_in . c / tau)_k

with `pairs: multicrop` the pairs are every crop i with each global crop j != i, which is
the official averaging (sum over the other crops / (crops - 1), mean over the global crops).
Optionally a queue of the global crops' past embeddings (`queue_size`, filled from
`queue_start` of the training budget on, used once full) joins the Sinkhorn input, as
the official code's for small batches; the prototypes' gradients are dropped for the
first `freeze_prototypes_until` of the budget.

The official code's epoch-based settings are fractions of the budget here: its defaults
(main_swav.py) train 100 epochs, start the queue at epoch 15 (0.15) and freeze the
prototypes for 313 iterations, one epoch of ImageNet at batch 4096 (0.01).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import annotated_types as at
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import PairBatch, StatefulObjective
from cmp.api.hookspecs import Register
from cmp.api.params import Fraction, NonNegativeInt, ParamError, Positive, PositiveInt
from cmp.nn import RingBuffer, gather_no_grad, rank, sinkhorn_knopp, world_size

Iterations = Annotated[int, at.Ge(1), at.Le(100)]


class SwAV(StatefulObjective):
    """Prototypes, Sinkhorn-Knopp codes of the global views and swapped prediction (see the module)."""

    def __init__(
        self, dim: int, prototypes: int, temperature: float, epsilon: float, iterations: int,
        queue_size: int, queue_start: float, freeze_prototypes_until: float,
    ) -> None:
        super().__init__()
        self.prototypes = nn.Linear(dim, prototypes, bias=False)
        self.temperature = temperature
        self.epsilon = epsilon
        self.iterations = iterations
        self.queue_start = queue_start
        self.freeze_until = freeze_prototypes_until
        self.queue = RingBuffer(queue_size) if queue_size else None
        """Past embeddings of every global view of an image side by side in one row (width
        views x dim), gathered from every process: the same on each."""
        self._incoming: Tensor | None = None
        self._queue_used = False

    @torch.no_grad()
    def _normalise_prototypes(self) -> None:
        """The official code's step start: the prototypes scaled to unit length, in place."""
        weight = self.prototypes.weight
        weight.copy_(F.normalize(weight, dim=1))

    def _queued(self, view: int, views: int) -> Tensor | None:
        """This process's share of the queue's embeddings of global view `view` (each queued
        row counts once in the global Sinkhorn sums), or None while the queue is not full."""
        if self.queue is None or not self.queue.full:
            return None
        rows = self.queue.values()
        per_view = rows.shape[1] // views
        return torch.tensor_split(rows[:, view * per_view : (view + 1) * per_view], world_size())[rank()]

    def codes(self, keys: Tensor, views: int) -> list[Tensor]:
        """Each positive view's codes (N, K): Sinkhorn-Knopp over the global batch (and queue)."""
        weight = self.prototypes.weight.detach()
        out = []
        for view, chunk in enumerate(keys.detach().chunk(views)):
            scores = chunk @ weight.T
            queued = self._queued(view, views)
            if queued is not None:
                scores = torch.cat([queued.to(scores.dtype) @ weight.T, scores])
            out.append(sinkhorn_knopp(scores, epsilon=self.epsilon, iterations=self.iterations)[-chunk.shape[0] :])
        self._queue_used = self.queue is not None and self.queue.full
        return out

    def forward(self, batch: PairBatch, progress: float) -> Tensor:
        if not batch.pairs:
            raise ValueError("SwAV needs the batch's pairs (PairBatch.pairs), to know which global view each anchor predicts")
        self._normalise_prototypes()
        with torch.autocast(batch.anchors.device.type, enabled=False):  # scores and codes in full precision
            dtype = self.prototypes.weight.dtype
            anchors = F.normalize(batch.anchors.to(dtype), dim=1)
            keys = F.normalize(batch.keys.to(dtype), dim=1)
            codes = self.codes(keys, batch.key_views)
            targets = torch.cat([codes[batch.key_chunk(k)] for k in range(len(batch.pairs))])
            log_p = F.log_softmax(self.prototypes(anchors) / self.temperature, dim=1)
            loss = -(targets * log_p).sum(dim=1).mean()
        if self.queue is not None and progress >= self.queue_start:
            self._incoming = keys.detach()
        return loss

    @torch.no_grad()
    def update(self, batch: PairBatch, progress: float) -> None:
        """Enqueue this step's normalised global-view embeddings, every process's (a collective)."""
        if self.queue is None or self._incoming is None:
            return
        views = batch.key_views
        everyone = gather_no_grad(self._incoming, views)
        self.queue.push(torch.cat(everyone.chunk(views), dim=1))
        self._incoming = None

    def frozen_parameters(self, progress: float) -> list[Tensor]:
        return [self.prototypes.weight] if progress < self.freeze_until else []

    def stats(self) -> dict[str, float]:
        if self.queue is None:
            return {}
        return {"queue_fill": self.queue.count / self.queue.size, "queue_used": float(self._queue_used)}


def swav(
    dim: int, *,
    prototypes: PositiveInt = 3000,
    temperature: Positive = 0.1,
    epsilon: Positive = 0.05,
    iterations: Iterations = 3,
    queue_size: NonNegativeInt = 0,
    queue_start: Fraction = 0.15,
    freeze_prototypes_until: Fraction = 0.01,
) -> SwAV:
    """SwAV: K prototypes, Sinkhorn-Knopp codes of the global views, swapped prediction.

    Defaults are the official main_swav.py's: 3000 prototypes, temperature 0.1, epsilon
    0.05, 3 Sinkhorn iterations, no queue (a queue of 3840 for batches of 256: set
    `queue_size`; it starts at `queue_start`, epoch 15 of 100, and is used once full),
    prototypes frozen for the first `freeze_prototypes_until` (one epoch of 100).
    """
    return SwAV(dim, prototypes, temperature, epsilon, iterations, queue_size, queue_start, freeze_prototypes_until)


def check_queue_holds_a_batch(params: Mapping[str, Any], cell: Any) -> None:
    """At recipe load: a queue must hold more than one global batch, or it never adds a row
    that the batch itself does not already give."""
    size, batch = params["queue_size"], cell.train.batch_size
    if size and size <= batch:
        raise ParamError(("queue_size",), f"a queue of {size} embeddings holds no more than one batch of {batch} "
                                          f"(train.batch_size): set 0 for none, or more (the official code: 3840 "
                                          f"for batches of 256)")


@hookimpl
def cmp_register_objectives(register: Register) -> None:
    register("swav", swav, check_cell=check_queue_holds_a_batch)
