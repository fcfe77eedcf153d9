"""Small building blocks for plugin authors: EMA, freezing, a ring buffer, a nearest-neighbour
support set, shuffled BatchNorm, gathering, global-batch statistics, Sinkhorn-Knopp codes.

Each block is something several contrastive methods need and that is easy to get subtly
wrong: a momentum update that misses a parameter, a queue that drops keys when a batch
runs past the end of its buffer, a memory whose pointer is lost on resume, a shuffle that
is not undone, gathered negatives whose gradient is off by the number of processes,
batch statistics (Barlow Twins' cross-correlation, VICReg's covariance) taken per process,
a support set that starts from random vectors or differs between processes, codes or a
centre normalised over one process's rows instead of the global batch's.

A MoCo-like queue and a momentum target, each a few lines with these blocks (the plugin
guide, docs/plugins.md, shows and runs this example):

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cmp.api.contracts import Negatives, NegativeSource, PairBatch, TargetBranch
from cmp.nn import RingBuffer, freeze, update_momentum


class RecentKeys(NegativeSource):
    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.memory = RingBuffer(size, dim)

    def negatives(self, batch: PairBatch) -> Negatives:
        return Negatives(self.memory.values())

    def update(self, batch: PairBatch) -> None:
        self.memory.push(F.normalize(batch.keys.float(), dim=1))


class EmaTarget(TargetBranch):
    uses_online = False

    def __init__(self, online: nn.Module, m: float) -> None:
        super().__init__()
        self.network = freeze(copy.deepcopy(online))
        self.m = m

    @torch.no_grad()
    def positives(self, views, which, online):
        return {v: self.network(views[v]) for v in which}

    def update(self, online: nn.Module, progress: float, batch: PairBatch) -> None:
        update_momentum(self.network, online, self.m)
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cmp.distributed import rank, world_size  # one implementation, re-exported for plugins

ModuleT = TypeVar("ModuleT", bound=nn.Module)

__all__ = [
    "RingBuffer",
    "SupportSet",
    "all_reduce_sum",
    "covariance",
    "cross_correlation",
    "freeze",
    "gather",
    "gather_no_grad",
    "grouped_batchnorm_forward",
    "off_diagonal",
    "rank",
    "shuffle_batch",
    "sinkhorn_knopp",
    "unfreeze",
    "unshuffle_batch",
    "update_momentum",
    "world_size",
]


@torch.no_grad()
def update_momentum(target: nn.Module, online: nn.Module, m: float) -> None:
    """Move every parameter of `target` toward `online`'s: theta_t <- m theta_t + (1 - m) theta_o.

    The EMA step of a momentum encoder (MoCo, BYOL), done in place and without autograd,
    as one fused update over all parameters. The two modules must have the same
    parameters in the same order (`target` a deep copy of `online`). Buffers, such as
    BatchNorm running statistics, are not touched: the target keeps the statistics of its
    own forward passes.
    """
    targets: list[Tensor] = list(target.parameters())
    sources = [p.detach() for p in online.parameters()]
    if len(targets) != len(sources):
        raise ValueError(f"target has {len(targets)} parameters, online has {len(sources)}: not a copy of it")
    if targets:
        torch._foreach_lerp_(targets, sources, 1 - m)


def freeze(module: ModuleT) -> ModuleT:
    """Stop gradients to every parameter of `module` (a momentum copy, a fixed teacher); returns it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: ModuleT) -> ModuleT:
    """Let every parameter of `module` receive gradients again; returns it."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


class RingBuffer(nn.Module):
    """A first-in-first-out memory of the last `size` rows pushed: a MoCo queue, an NNCLR support set.

    `entries` (size, dim) holds the rows; a push writes at the pointer and wraps around the
    end, overwriting the oldest rows, so no row of a batch is dropped (a push of more than
    `size` rows keeps its last `size`). Until the buffer is full only its first `count`
    rows hold data. Rows are stored detached and as given: normalising them is the
    caller's choice.

    The rows, the pointer and the fill count are buffers, so they move with `.to(device)`,
    are saved by `state_dict()` and restored by `load_state_dict()`. Pointer and count are
    mirrored as Python ints, so a push or a read never waits on the device.

    With `dim=None` the width is taken from the first push, or from the state dict being
    loaded.
    """

    entries: Tensor
    pointer: Tensor
    filled: Tensor

    def __init__(self, size: int, dim: int | None = None) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"a ring buffer needs size >= 1, got {size}")
        if dim is not None and dim < 1:
            raise ValueError(f"a ring buffer needs dim >= 1 (or None: taken from the first push), got {dim}")
        self._size = size
        self.register_buffer("entries", torch.zeros(size, dim if dim is not None else 0))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._pointer = 0
        self._filled = 0
        self.register_load_state_dict_pre_hook(_take_saved_width)
        self.register_load_state_dict_post_hook(_mirror_counters)

    @property
    def size(self) -> int:
        """How many rows the buffer holds once full."""
        return self._size

    @property
    def count(self) -> int:
        """How many rows hold pushed data (at most `size`)."""
        return self._filled

    @property
    def full(self) -> bool:
        """True once `size` rows have been pushed: every further push overwrites the oldest."""
        return self._filled == self._size

    def values(self) -> Tensor:
        """(count, dim) the rows that hold data, in buffer order; a view, not a copy."""
        return self.entries[: self._filled]

    @torch.no_grad()
    def push(self, x: Tensor) -> None:
        """Store the rows of `x` (n, dim), detached, at the pointer, wrapping around the end."""
        if x.ndim != 2:
            raise ValueError(f"push takes rows (n, dim), got shape {tuple(x.shape)}")
        if self.entries.shape[1] == 0:
            self.entries = self.entries.new_zeros(self._size, x.shape[1])
        if x.shape[1] != self.entries.shape[1]:
            raise ValueError(f"push of rows of width {x.shape[1]} into a ring buffer of width {self.entries.shape[1]}")
        rows = x.detach()[-self._size :]
        n = rows.shape[0]
        first = min(n, self._size - self._pointer)
        self.entries[self._pointer : self._pointer + first] = rows[:first]
        if n > first:
            self.entries[: n - first] = rows[first:]
        self._pointer = (self._pointer + n) % self._size
        self._filled = min(self._size, self._filled + n)
        self.pointer.fill_(self._pointer)
        self.filled.fill_(self._filled)

    def extra_repr(self) -> str:
        return f"size={self._size}, dim={self.entries.shape[1] or None}"


def _take_saved_width(module: RingBuffer, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """A ring buffer of unknown width takes the saved width, so the saved rows fit."""
    saved = state_dict.get(prefix + "entries")
    if saved is not None and saved.ndim == 2 and module.entries.shape[1] == 0:
        module.entries = module.entries.new_zeros(module.size, saved.shape[1])


def _mirror_counters(module: RingBuffer, incompatible_keys: Any) -> None:
    """Mirror the loaded pointer and fill count as ints."""
    module._pointer = int(module.pointer)
    module._filled = int(module.filled)


class SupportSet(nn.Module):
    """NNCLR's support set: a FIFO memory of unit embeddings, and each query's nearest entry in it.

    `push(x)` L2-normalises the rows of x (n, dim), detached, gathers them from every
    process in rank order (`gather_no_grad`) and stores them in a `RingBuffer`: every
    process then holds the same support set, the one a single process with the whole
    batch would hold, and a push that runs past the end wraps around (no row of a batch is
    dropped; one larger than `size` keeps its last `size` rows). It starts empty and only
    the `count` rows pushed so far are searched (no random initial entries), so
    `nearest` on an empty support set is an error: the caller decides what stands in.

    `nearest(queries)` (n, dim) returns, for each query, the stored entry of highest
    cosine similarity (the first on a tie), without gradient. The search runs in full
    precision outside autocast, so bfloat16 rounding cannot change which entry is chosen,
    and `chunk` queries at a time, so the (n, size) similarities of a large batch against
    a large support set are never held at once. The entries are buffers: checkpointed
    and restored with the module.
    """

    def __init__(self, size: int, dim: int | None = None, chunk: int = 1024) -> None:
        super().__init__()
        if chunk < 1:
            raise ValueError(f"a support set searches chunk >= 1 queries at a time, got {chunk}")
        self.memory = RingBuffer(size, dim)
        self.chunk = chunk

    @property
    def size(self) -> int:
        """How many entries the support set holds once full."""
        return self.memory.size

    @property
    def count(self) -> int:
        """How many entries have been pushed (at most `size`)."""
        return self.memory.count

    def values(self) -> Tensor:
        """(count, dim) the stored unit rows, in buffer order."""
        return self.memory.values()

    @torch.no_grad()
    def push(self, x: Tensor, groups: int = 1) -> None:
        """Store the rows of x (n, dim) of every process, L2-normalised, oldest entries overwritten first.

        A collective under torch.distributed: every process calls it with the same n. When
        x is `groups` equal chunks (one per view, as `PairBatch.keys`), the gathered rows
        are laid out as one process with the whole batch would push them (`gather_no_grad`).
        """
        rows = gather_no_grad(x, groups)
        self.memory.push(F.normalize(_full_precision(rows), dim=1))

    @torch.no_grad()
    def nearest_indices(self, queries: Tensor) -> Tensor:
        """(n,) for each query (n, dim), the index in `values()` of its most cosine-similar entry."""
        if self.count == 0:
            raise ValueError("the support set is empty: nothing has been pushed yet")
        stored = self.values()
        with torch.autocast(queries.device.type, enabled=False):
            unit = F.normalize(_full_precision(queries.detach()), dim=1).to(stored.dtype)
            return torch.cat([(part @ stored.T).argmax(dim=1) for part in unit.split(self.chunk)])

    @torch.no_grad()
    def nearest(self, queries: Tensor) -> Tensor:
        """(n, dim) the stored entry most cosine-similar to each query (n, dim), detached."""
        return self.values()[self.nearest_indices(queries)]

    def extra_repr(self) -> str:
        return f"size={self.size}, chunk={self.chunk}"


def _full_precision(x: Tensor) -> Tensor:
    """float16/bfloat16 -> float32; other dtypes unchanged (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def shuffle_batch(x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(x[permutation], permutation): the rows of x (N, ...) in a random order, and that order (N,).

    The permutation is drawn on x's device from `generator` (torch's default one when
    None); `unshuffle_batch` puts the rows back.
    """
    permutation = torch.randperm(x.shape[0], device=x.device, generator=generator)
    return x[permutation], permutation


def unshuffle_batch(x: Tensor, permutation: Tensor) -> Tensor:
    """The inverse of `shuffle_batch`: row i of the result is the row of x that came from row i."""
    return x[torch.argsort(permutation)]


def grouped_batchnorm_forward(
    module: nn.Module, x: Tensor, groups: int, generator: torch.Generator | None = None
) -> Tensor:
    """`module(x)` with the batch x (N, ...) split in random groups that each get their own BatchNorm statistics.

    The rows are shuffled, cut with `torch.chunk` into `groups` groups of ceil(N / groups)
    rows (the last group smaller, and fewer groups when N does not divide well), each group
    goes through `module` alone, and the outputs are put back in the order of x. In one
    process this is MoCo's "shuffling BN": a key is normalised with the statistics of
    rows other than those its query saw, so the loss cannot be lowered by reading batch
    statistics. With `groups` <= 1, or fewer than 2 rows per group (N < 2 groups), it is
    `module(x)` and draws no random numbers.
    """
    if groups <= 1 or x.shape[0] < 2 * groups:
        return module(x)
    shuffled, permutation = shuffle_batch(x, generator)
    out = torch.cat([module(chunk) for chunk in shuffled.chunk(groups)])
    return unshuffle_batch(out, permutation)


def _by_group(parts: list[Tensor], groups: int) -> Tensor:
    """Concatenate every rank's x, each cut in `groups` chunks, group-major: for each
    group, the chunk of rank 0, of rank 1, ... (one process's layout of the whole batch)."""
    if groups == 1:
        return torch.cat(parts)
    chunks = [part.chunk(groups) for part in parts]
    return torch.cat([chunks[r][g] for g in range(groups) for r in range(len(parts))])


def gather(x: Tensor, groups: int = 1) -> Tensor:
    """(W * N, ...) the x (N, ...) of every process, concatenated in rank order; differentiable.

    For negatives shared across processes (SimCLR over W GPUs): every process must pass
    the same shape. In one process this is x itself. When x is `groups` equal chunks (one
    per view), the result is group-major: each view's rows of every rank together, the
    layout one process would have for the whole batch.

    Gradient: each process gets back, for its own x, the gradient that the losses of *all*
    processes put on its slice of the gathered tensor, summed (all_gather's backward is a
    reduce-scatter with SUM). With each process's loss a mean over its anchors and DDP
    averaging parameter gradients over processes, training then follows the gradient of
    the mean loss, as one process with the whole batch would. The common mistake,
    gathering without autograd and putting the local x back in its slice, keeps only the
    local loss's share: what the other W - 1 processes' losses send back through a row
    used as their negative is lost, so the negatives' part of the gradient is about W
    times too small.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for the private _functional_collectives
        parts = all_gather(x.contiguous())
    return _by_group(list(parts), groups)


@torch.no_grad()
def gather_no_grad(x: Tensor, groups: int = 1) -> Tensor:
    """(W * N, ...) the x (N, ...) of every process in rank order, detached: keys for a queue.

    `groups` as in `gather`, so a queue fed the gathered keys holds what one process with
    the whole batch would enqueue, in the same order."""
    x = x.detach()
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return _by_group(parts, groups)


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """The sum of x over every process, detached (a new tensor; x itself is not changed).

    For statistics that are not trained through: DINO's centre (the teacher outputs' sum
    and count over all processes), Sinkhorn-Knopp's normalising sums. In one process
    this is x, detached. Every process must call it with the same shape.
    """
    if world_size() == 1:
        return x.detach()
    total = x.detach().clone()
    dist.all_reduce(total)
    return total


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, *, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """(N, K) soft codes of this process's rows of `scores` (N, K), equipartitioned over the
    rows of *every* process: SwAV's codes (Caron et al. 2020, section 3.1 and appendix A.1).

    Q = exp(scores / epsilon)^T is scaled to sum to 1, then `iterations` times each
    prototype's row to 1/K and each sample's column to 1/B (B the rows of all processes);
    returned as B Q^T, so each row of the result sums to 1. The row sums, the total and B
    are summed over processes (`all_reduce_sum`), as the official `distributed_sinkhorn`
    does, so 2 processes x N/2 rows give the codes 1 process x N would. No gradient; in
    full precision (float32, or float64 for float64 scores). `scores` are cosines with
    the prototypes, in [-1, 1], so exp(scores / 0.05) stays below e^20 as in the official
    code, which takes no maximum out. A process may pass 0 rows (a share of nothing).
    """
    if epsilon <= 0 or iterations < 0:
        raise ValueError(f"sinkhorn_knopp needs epsilon > 0 and iterations >= 0, got {epsilon} and {iterations}")
    q = torch.exp(_full_precision(scores.detach()) / epsilon).T
    q = q / all_reduce_sum(q.sum())
    prototypes = q.shape[0]
    samples = all_reduce_sum(torch.tensor(float(q.shape[1]), dtype=q.dtype, device=q.device))
    for _ in range(iterations):
        q = q / all_reduce_sum(q.sum(dim=1, keepdim=True)) / prototypes
        q = q / q.sum(dim=0, keepdim=True) / samples
    return (q * samples).T


def off_diagonal(m: Tensor) -> Tensor:
    """(D * (D - 1),) the off-diagonal entries of a square matrix m (D, D), row by row; a view, no mask."""
    d = m.shape[0]
    if m.ndim != 2 or m.shape[1] != d:
        raise ValueError(f"off_diagonal takes a square matrix, got shape {tuple(m.shape)}")
    return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def _standardized(x: Tensor, unbiased: bool, eps: float) -> Tensor:
    """Each column of x (N, D) less its mean, over sqrt(its variance + eps)."""
    centred = x - x.mean(dim=0)
    return centred / torch.sqrt(x.var(dim=0, correction=int(unbiased)) + eps)


def cross_correlation(a: Tensor, b: Tensor, *, unbiased: bool = False, eps: float = 1e-5) -> Tensor:
    """(D, D) cross-correlation of a (N, D) and b (N, D) over the global batch: Barlow Twins' C.

    Row i of a and of b are two embeddings of one image (this process's rows; every
    process passes the same N). Both are gathered from every process (`gather`, with its
    gradient), each column is standardised with the *global* batch's mean and standard
    deviation, and C = a_n^T b_n / N_global. `unbiased=False` divides by
    sqrt(biased variance + eps), as `nn.BatchNorm1d(affine=False)` in training mode
    (eps 1e-5, its default); `unbiased=True, eps=0` is `x.std(0)` (Bessel-corrected).
    In one process this is the formula on a and b.

    Across W processes every process gets the same C, and the gradient each process
    sends back to its own rows is W times the one-process gradient on them, which DDP's
    averaging of parameter gradients over W processes turns into the one-process
    gradient: the convention of `gather`. (An `all_reduce` of per-process matrices
    without autograd, or normalisation with per-process statistics, gets this wrong.)
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"cross_correlation takes two (N, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = gather(a), gather(b)
    _need_two_rows("cross_correlation", a)
    return _standardized(a, unbiased, eps).T @ _standardized(b, unbiased, eps) / a.shape[0]


def covariance(x: Tensor) -> Tensor:
    """(D, D) covariance of the rows of x (N, D) over the global batch, Bessel-corrected: VICReg's C(Z).

    x is gathered from every process (`gather`, with its gradient; every process passes
    the same N), centred on the global mean, and C = x_c^T x_c / (N_global - 1). Its
    diagonal is each dimension's unbiased variance. Gradients follow `cross_correlation`'s
    convention. In one process this is the formula on x.
    """
    if x.ndim != 2:
        raise ValueError(f"covariance takes an (N, D) tensor, got shape {tuple(x.shape)}")
    x = gather(x)
    _need_two_rows("covariance", x)
    centred = x - x.mean(dim=0)
    return centred.T @ centred / (x.shape[0] - 1)


def _need_two_rows(block: str, gathered: Tensor) -> None:
    """One row has no variance: refuse it rather than return nan (or, with an eps, zeros)."""
    if gathered.shape[0] < 2:
        raise ValueError(f"{block} needs at least 2 rows in the global batch, got {gathered.shape[0]}")


@torch.no_grad()
def forward_shuffled_across_ranks(module: nn.Module, x: Tensor) -> Tensor:
    """`module(x)` with the rows of every process's x shuffled across processes (MoCo's
    shuffle-BN over GPUs): all ranks' x are gathered, permuted by one permutation drawn
    on rank 0 and broadcast, each rank runs its share of the permuted batch (so its
    BatchNorm statistics mix other ranks' images), and gets back its own rows' outputs.
    No gradient (a key encoder's forward). In one process this is `module(x)`.
    """
    if world_size() == 1:
        return module(x)
    everything = gather_no_grad(x)
    permutation = torch.randperm(everything.shape[0], device=x.device)
    dist.broadcast(permutation, 0)
    n, r = x.shape[0], rank()
    mine = module(everything[permutation[r * n : (r + 1) * n]])
    return unshuffle_batch(gather_no_grad(mine), permutation)[r * n : (r + 1) * n]
