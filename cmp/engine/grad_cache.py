"""Exact large batches in the memory of a small one: gradient caching (Gao et al., 2021).

`train.micro_batch: M` runs a step of B images in chunks of M:

1. without gradients, each chunk's online embeddings (z, and the predictor's p) and, for
   a target with its own network (MoCo, BYOL), its positives — the random state before
   each chunk is kept;
2. the loss over the whole batch (every negative) from those embeddings, made leaves
   that require a gradient: backward stops at them, leaving dL/dz and dL/dp;
3. each chunk again, with gradients and the same random state (dropout, stochastic
   depth draw the same), back-propagating the cached dL/dz and dL/dp into the weights.

Memory is that of one chunk's activations; the gradient is the whole batch's — exactly,
when the network has no BatchNorm. With BatchNorm each chunk is normalised with its own
statistics (the same in both passes, like "ghost" BatchNorm over M images), so the
result equals a full-batch step only for M = B; running statistics are updated once per
chunk, by the first pass. Under fp16 the cached gradients are those of the scaled loss,
so the GradScaler's unscale and inf checks see exactly what they would without chunks.
With several processes the chunks' backward passes defer DDP's all-reduce to the last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cmp.engine.learner import Embeddings, Learner, StepOutput


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _batchnorm_buffers(module: nn.Module) -> list[Tensor]:
    return [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase) for b in m.buffers()]


def cached_step(
    learner: Learner,
    forward: Any,
    views: Sequence[Tensor],
    ids: Tensor,
    micro_batch: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    scale: Callable[[Tensor], Tensor],
) -> StepOutput:
    """One step's loss with the gradient of the whole batch accumulated into the weights.

    `forward` is the learner or its DistributedDataParallel wrapper; `scale` the
    GradScaler's `scale` (identity without fp16). Returns the loss (detached) and the
    step's `PairBatch` for the components' updates.
    """
    device = views[0].device
    n = views[0].shape[0]
    chunks = [slice(start, min(n, start + micro_batch)) for start in range(0, n, micro_batch)]
    network_target = not learner.target.uses_online
    states, z_parts, p_parts, t_parts = [], [], [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(device))
            part = [v[chunk] for v in views]
            with autocast():
                embedded: Embeddings = forward(part, embed_only=True)
                if network_target:
                    t_parts.append(learner.target_positives(part, embedded.z))
            z_parts.append(embedded.z)
            p_parts.append(embedded.p)
    after = _rng_state(device)

    def leaves(parts: list[dict[int, Tensor]]) -> dict[int, Tensor]:
        return {v: torch.cat([p[v] for p in parts]).detach().requires_grad_() for v in parts[0]}

    z = leaves(z_parts)
    p = z if learner.predictor is None else leaves(p_parts)
    targets = {v: torch.cat([t[v] for t in t_parts]) for v in t_parts[0]} if network_target else None
    with autocast():
        out = learner.assemble(views, ids, Embeddings(z, p), targets)
    scale(out.loss).backward()

    saved = [b.clone() for b in _batchnorm_buffers(learner)]
    last = len(chunks) - 1
    for k, chunk in enumerate(chunks):
        _set_rng_state(states[k], device)
        syncing = contextlib.nullcontext() if k == last or not hasattr(forward, "no_sync") else forward.no_sync()
        with syncing:
            with autocast():
                embedded = forward([v[chunk] for v in views], embed_only=True)
            outputs, grads = [], []
            for cached, fresh in ((z, embedded.z), (p, embedded.p) if p is not z else ({}, {})):
                for v, leaf in cached.items():
                    if leaf.grad is not None:
                        outputs.append(fresh[v])
                        grads.append(leaf.grad[chunk])
            if outputs:
                torch.autograd.backward(outputs, grads)
    for buffer, value in zip(_batchnorm_buffers(learner), saved):
        buffer.copy_(value)  # the first pass already moved the running statistics
    _set_rng_state(after, device)
    return StepOutput(out.loss.detach(), out.batch)
