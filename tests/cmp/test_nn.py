"""cmp.nn's building blocks against independent references.

EMA against a plain per-parameter formula, the ring buffer against a list of slots written
one row at a time, grouped BatchNorm against BatchNorm's formula applied by hand to the
groups the permutation makes, gather's gradient across two real processes, and the
global-batch statistics against their formulas as loops (across processes:
tests/plugins/test_global_batch_losses.py).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from cmp.nn import (
    RingBuffer,
    covariance,
    cross_correlation,
    freeze,
    gather,
    gather_no_grad,
    grouped_batchnorm_forward,
    off_diagonal,
    rank,
    shuffle_batch,
    unfreeze,
    unshuffle_batch,
    update_momentum,
    world_size,
)


def small_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))


# EMA and freezing


@pytest.mark.parametrize("m", [0.0, 0.5, 0.9, 0.996, 1.0])
def test_update_momentum_matches_the_per_parameter_formula(m: float) -> None:
    online = small_network()
    target = freeze(copy.deepcopy(online))
    online(torch.randn(6, 5))  # the online BatchNorm's running statistics move; the target's must not
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before = {name: p.detach().clone() for name, p in target.named_parameters()}
    buffers = {name: b.clone() for name, b in target.named_buffers()}

    update_momentum(target, online, m)

    for name, o in online.named_parameters():
        t = dict(target.named_parameters())[name]
        expected = [m * a + (1 - m) * b for a, b in zip(before[name].flatten().tolist(), o.detach().flatten().tolist())]
        torch.testing.assert_close(t.flatten(), torch.tensor(expected), rtol=1e-6, atol=1e-6)
        assert not t.requires_grad and t.grad is None
    for name, b in target.named_buffers():
        assert torch.equal(b, buffers[name]), f"buffer {name} changed"


def test_update_momentum_refuses_modules_that_are_not_copies() -> None:
    with pytest.raises(ValueError, match="not a copy"):
        update_momentum(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)


def test_update_momentum_of_a_module_without_parameters_does_nothing() -> None:
    update_momentum(nn.ReLU(), nn.ReLU(), 0.9)


def test_freeze_and_unfreeze_switch_every_parameter_and_return_the_module() -> None:
    net = small_network()
    assert freeze(net) is net
    assert all(not p.requires_grad for p in net.parameters())
    assert unfreeze(net) is net
    assert all(p.requires_grad for p in net.parameters())


# The ring buffer


class SlotModel:
    """The reference: `size` slots written one row at a time; a push keeps its last `size` rows."""

    def __init__(self, size: int) -> None:
        self.slots: list[list[float] | None] = [None] * size
        self.pointer = 0
        self.filled = 0

    def push(self, rows: list[list[float]]) -> None:
        size = len(self.slots)
        for row in rows[-size:] if rows else []:
            self.slots[self.pointer] = row
            self.pointer = (self.pointer + 1) % size
            self.filled = min(size, self.filled + 1)

    def values(self) -> list[list[float]]:
        return [row for row in self.slots[: self.filled] if row is not None]


def rows_from(start: int, n: int, dim: int) -> Tensor:
    """n distinct rows: row i is (start + i) * (1, -1, 0.5, ...), so each is recognisable."""
    ids = torch.arange(start, start + n, dtype=torch.float32)[:, None]
    return ids * torch.tensor([1.0, -1.0, 0.5, 2.0][:dim])


def assert_same(buffer: RingBuffer, model: SlotModel, dim: int) -> None:
    expected = torch.tensor(model.values()).reshape(-1, dim)
    assert torch.equal(buffer.values(), expected)
    assert buffer.count == model.filled and int(buffer.filled) == model.filled
    assert int(buffer.pointer) == model.pointer
    assert buffer.full == (model.filled == buffer.size)


def test_ring_buffer_matches_a_slot_model_for_many_push_sequences() -> None:
    rng = random.Random(0)
    cases = 0
    for size in (1, 2, 3, 4, 5, 7, 8, 13, 16):
        for _ in range(25):
            dim = rng.choice([1, 2, 4])
            buffer, model = RingBuffer(size, dim if rng.random() < 0.5 else None), SlotModel(size)
            start = 0
            for _ in range(rng.randint(1, 8)):
                n = rng.choice([0, 1, size - 1, size, size + 1, 2 * size + 3, rng.randint(0, 3 * size)])
                n = max(n, 0)
                rows = rows_from(start, n, dim)
                start += n
                buffer.push(rows)
                model.push(rows.tolist())
                assert_same(buffer, model, dim)
                cases += 1
    assert cases > 500


def test_a_push_wraps_around_the_end_and_a_large_push_keeps_its_last_rows() -> None:
    buffer = RingBuffer(5, 2)
    buffer.push(rows_from(0, 4, 2))
    buffer.push(rows_from(4, 3, 2))  # rows 4 at slot 4, then 5 and 6 wrap to slots 0 and 1
    assert buffer.values()[:, 0].tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    assert buffer.full and int(buffer.pointer) == 2
    buffer.push(rows_from(7, 12, 2))  # only rows 14..18 are kept, written from slot 2 on
    assert buffer.values()[:, 0].tolist() == [17.0, 18.0, 14.0, 15.0, 16.0]
    assert int(buffer.pointer) == 2


@pytest.mark.parametrize("lazy", [False, True])
def test_a_state_dict_round_trip_continues_exactly_where_it_would_have(lazy: bool) -> None:
    rng = random.Random(1)
    for size in (1, 3, 8, 10):
        for cut in range(6):
            buffer, model = RingBuffer(size, 3), SlotModel(size)
            start = 0
            sizes = [rng.randint(0, 2 * size + 2) for _ in range(10)]
            for n in sizes[:cut]:
                buffer.push(rows_from(start, n, 3))
                model.push(rows_from(start, n, 3).tolist())
                start += n
            state = buffer.state_dict()
            assert set(state) == {"entries", "pointer", "filled"}
            restored = RingBuffer(size, None if lazy else 3)
            restored.load_state_dict(state)
            assert_same(restored, model, 3)
            for n in sizes[cut:]:
                for ring in (buffer, restored):
                    ring.push(rows_from(start, n, 3))
                model.push(rows_from(start, n, 3).tolist())
                start += n
                assert_same(restored, model, 3)
                assert torch.equal(restored.entries, buffer.entries)


def test_a_lazy_ring_buffer_takes_its_width_from_the_first_push() -> None:
    buffer = RingBuffer(4)
    assert buffer.values().shape == (0, 0)
    buffer.push(rows_from(0, 2, 4))
    assert buffer.entries.shape == (4, 4) and buffer.values().shape == (2, 4)
    with pytest.raises(ValueError, match="width 2"):
        buffer.push(rows_from(2, 1, 2))


def test_a_loaded_ring_buffer_of_another_size_is_refused() -> None:
    saved = RingBuffer(4, 2)
    saved.push(rows_from(0, 3, 2))
    for restored in (RingBuffer(5, 2), RingBuffer(5)):
        with pytest.raises(RuntimeError, match="size mismatch"):
            restored.load_state_dict(saved.state_dict())


def test_pushed_rows_are_stored_detached_and_as_given() -> None:
    buffer = RingBuffer(6, 3)
    x = (torch.randn(4, 3) * 5).requires_grad_(True)
    buffer.push(x * 2)
    assert not buffer.entries.requires_grad and buffer.entries.grad_fn is None
    torch.testing.assert_close(buffer.values(), (x * 2).detach())  # not normalised


def test_ring_buffer_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError):
        RingBuffer(0, 3)
    with pytest.raises(ValueError):
        RingBuffer(3, 0)
    with pytest.raises(ValueError, match="rows"):
        RingBuffer(3, 2).push(torch.zeros(2))


# Shuffling and grouped BatchNorm


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_unshuffle_undoes_shuffle(n: int) -> None:
    x = torch.randn(n, 3, 2)
    shuffled, permutation = shuffle_batch(x, torch.Generator().manual_seed(n))
    assert sorted(permutation.tolist()) == list(range(n))
    assert torch.equal(shuffled, x[permutation])
    assert torch.equal(unshuffle_batch(shuffled, permutation), x)


def test_shuffle_follows_its_generator() -> None:
    x = torch.arange(20.0)
    a = shuffle_batch(x, torch.Generator().manual_seed(3))[1]
    b = shuffle_batch(x, torch.Generator().manual_seed(3))[1]
    assert torch.equal(a, b) and not torch.equal(a, torch.arange(20))


def batchnorm_by_hand(rows: Tensor, norm: nn.BatchNorm1d) -> Tensor:
    """BatchNorm in training mode: each feature normalised with the rows' mean and biased variance."""
    mean = rows.mean(dim=0)
    var = ((rows - mean) ** 2).mean(dim=0)
    return (rows - mean) / torch.sqrt(var + norm.eps) * norm.weight.detach() + norm.bias.detach()


def seeded_norm(dim: int) -> nn.BatchNorm1d:
    norm = nn.BatchNorm1d(dim)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    return norm.train()


@pytest.mark.parametrize(("n", "groups"), [(12, 3), (16, 4), (10, 3), (9, 2), (8, 4)])
def test_grouped_batchnorm_normalises_each_row_with_its_groups_statistics(n: int, groups: int) -> None:
    norm = seeded_norm(5)
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(n)) * 3 + 1
    out = grouped_batchnorm_forward(norm, x, groups, generator=torch.Generator().manual_seed(7))

    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(7))
    size = -(-n // groups)  # torch.chunk's group size: ceil(n / groups)
    expected = torch.empty_like(x)
    for start in range(0, n, size):
        rows = permutation[start : start + size]  # the rows of x that landed in this group
        expected[rows] = batchnorm_by_hand(x[rows], norm)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

    unshuffled_split = torch.cat([batchnorm_by_hand(chunk, norm) for chunk in x.chunk(groups)])
    assert not torch.allclose(out, unshuffled_split, atol=1e-3)  # the shuffle is not a no-op
    assert not torch.allclose(out, batchnorm_by_hand(x, norm), atol=1e-3)  # nor one group


def test_grouped_batchnorm_without_a_generator_follows_torchs_rng() -> None:
    norm, x = seeded_norm(4), torch.randn(12, 4)
    torch.manual_seed(5)
    out = grouped_batchnorm_forward(norm, x, 3)
    torch.manual_seed(5)
    permutation = torch.randperm(12)
    expected = torch.cat([batchnorm_by_hand(x[rows], norm) for rows in permutation.chunk(3)])
    torch.testing.assert_close(out, expected[torch.argsort(permutation)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "groups"), [(7, 4), (8, 1), (3, 2), (6, 0)])
def test_grouped_batchnorm_falls_back_to_one_batch_without_drawing(n: int, groups: int) -> None:
    norm, x = seeded_norm(3), torch.randn(n, 3)
    generator = torch.Generator().manual_seed(1)
    state = generator.get_state()
    out = grouped_batchnorm_forward(norm, x, groups, generator=generator)
    torch.testing.assert_close(out, batchnorm_by_hand(x, norm), rtol=1e-5, atol=1e-5)
    assert torch.equal(generator.get_state(), state)


def test_grouped_batchnorm_in_eval_mode_changes_nothing_but_order() -> None:
    norm = seeded_norm(4)
    norm(torch.randn(32, 4) * 2 + 1)  # some running statistics
    norm.eval()
    x = torch.randn(16, 4)
    torch.testing.assert_close(grouped_batchnorm_forward(norm, x, 4, torch.Generator().manual_seed(0)), norm(x))


# Distributed helpers


def test_in_one_process_gather_is_the_identity_with_its_gradient() -> None:
    assert world_size() == 1 and rank() == 0
    x = torch.randn(4, 3, requires_grad=True)
    assert gather(x) is x
    weights = torch.randn(4, 3)
    (gather(x) * weights).sum().backward()
    assert torch.equal(x.grad, weights)
    keys = gather_no_grad(x)
    assert torch.equal(keys, x.detach()) and not keys.requires_grad


WORLD = 2
ROWS = 3


def weights_of(process: int) -> Tensor:
    """The weights process `process` puts on the gathered (WORLD * ROWS, 2) tensor in its loss."""
    return torch.arange(WORLD * ROWS * 2, dtype=torch.float64).reshape(WORLD * ROWS, 2) * (process + 1) + 0.5


def gather_in_process(process: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=process, world_size=WORLD)
    try:
        x = (torch.arange(ROWS * 2, dtype=torch.float64).reshape(ROWS, 2) + 100 * process).requires_grad_(True)
        gathered = gather(x)
        (gathered * weights_of(process)).sum().backward()
        result = {"rank": rank(), "world": world_size(), "gathered": gathered.detach(), "grad": x.grad}
        torch.save(result | {"keys": gather_no_grad(x)}, Path(out_dir) / f"{process}.pt")
        dist.barrier()  # no rank leaves while another's gloo pairs still talk to it (SIGABRT in teardown)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_across_processes_gather_concatenates_in_rank_order_and_sums_the_gradients(tmp_path: Path) -> None:
    mp.spawn(gather_in_process, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD)
    inputs = [torch.arange(ROWS * 2, dtype=torch.float64).reshape(ROWS, 2) + 100 * p for p in range(WORLD)]
    for process in range(WORLD):
        result = torch.load(tmp_path / f"{process}.pt", weights_only=True)
        assert (result["rank"], result["world"]) == (process, WORLD)
        assert torch.equal(result["gathered"], torch.cat(inputs))
        assert torch.equal(result["keys"], torch.cat(inputs))
        own = slice(process * ROWS, (process + 1) * ROWS)
        summed = sum(weights_of(p)[own] for p in range(WORLD))  # every process's loss, on this slice
        assert torch.equal(result["grad"], summed)


def test_a_ring_buffer_of_another_width_is_refused_and_a_lazy_one_without_rows_stays_lazy() -> None:
    saved = RingBuffer(4, 2)
    saved.push(rows_from(0, 3, 2))
    with pytest.raises(RuntimeError, match="size mismatch"):
        RingBuffer(4, 3).load_state_dict(saved.state_dict())  # a width given is kept, not replaced
    lazy = RingBuffer(4)
    missing = lazy.load_state_dict({}, strict=False).missing_keys
    assert sorted(missing) == ["entries", "filled", "pointer"] and lazy.entries.shape == (4, 0)
    assert repr(lazy) == "RingBuffer(size=4, dim=None)" and repr(saved) == "RingBuffer(size=4, dim=2)"


@pytest.mark.parametrize(("ranks", "groups"), [(1, 1), (3, 1), (2, 2), (3, 2), (2, 3)])
def test_gathered_parts_are_laid_out_view_major_as_one_process_would_hold_them(ranks: int, groups: int) -> None:
    from cmp.nn import _by_group

    rows = 2  # rows per view on each rank
    # rank r's x: `groups` views of `rows` rows each; a row is (rank, view, row) so it can be traced
    parts = [torch.tensor([[r, g, i] for g in range(groups) for i in range(rows)]) for r in range(ranks)]
    expected = [[r, g, i] for g in range(groups) for r in range(ranks) for i in range(rows)]
    assert _by_group(parts, groups).tolist() == expected


def test_ring_buffer_errors_say_what_is_wrong_and_counters_are_saved_as_integers() -> None:
    with pytest.raises(ValueError, match=r"needs size >= 1, got 0"):
        RingBuffer(0, 3)
    with pytest.raises(ValueError, match=r"needs dim >= 1 \(or None: taken from the first push\), got 0"):
        RingBuffer(3, 0)
    state = RingBuffer(3, 2).state_dict()
    assert state["pointer"].dtype == state["filled"].dtype == torch.int64


def test_with_a_faked_world_of_three_gather_lays_rows_out_as_one_process_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-process branch in this process: torch.distributed faked as 3 processes whose
    x is this one's plus 100 * rank (the real collectives are tested across processes above)."""
    import torch.distributed.nn.functional as collective

    import cmp.distributed as distributed
    import cmp.nn as cnn
    from cmp.api.contracts import PairBatch
    from cmp_plugins.negatives import InBatchNegatives

    world = 3
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(collective, "all_gather", lambda x, group=None: tuple(x + 100 * r for r in range(world)))

    def all_gather(parts: list[Tensor], x: Tensor, group: object = None) -> None:
        for r, part in enumerate(parts):
            part.copy_(x + 100 * r)

    monkeypatch.setattr(dist, "all_gather", all_gather)
    assert (cnn.world_size(), cnn.rank()) == (3, 1)
    assert (cnn.world_size, cnn.rank) == (distributed.world_size, distributed.rank)  # one implementation
    x = torch.arange(8.0).view(4, 2)  # two views of two rows
    rank_major = torch.cat([x + 100 * r for r in range(world)])
    view_major = torch.cat([x[v * 2 : v * 2 + 2] + 100 * r for v in range(2) for r in range(world)])
    assert torch.equal(gather(x), rank_major) and torch.equal(gather_no_grad(x), rank_major)
    assert torch.equal(gather(x, 2), view_major) and torch.equal(gather_no_grad(x, 2), view_major)

    keys, ids = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    batch = PairBatch(keys, keys, ids, keys, ids, key_views=2)
    negatives = InBatchNegatives().negatives(batch)
    assert torch.equal(negatives.bank, gather(keys, 2))
    gathered_ids = torch.cat([ids[v * 2 : v * 2 + 2] + 100 * r for v in range(2) for r in range(world)])
    assert torch.equal(negatives.valid, ids.unsqueeze(1) != gathered_ids.unsqueeze(0))


# Global-batch statistics (in one process: the formulas themselves)


def test_cross_correlation_standardises_each_column_as_batchnorm_or_with_the_unbiased_std() -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 6, 3
    a, b = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    rows_a, rows_b = a.tolist(), b.tolist()
    for unbiased, eps in [(False, 1e-5), (True, 0.0), (False, 0.3)]:
        got = cross_correlation(a, b, unbiased=unbiased, eps=eps)
        divisor = n - 1 if unbiased else n
        for i in range(d):
            for j in range(d):
                x, y = [r[i] for r in rows_a], [r[j] for r in rows_b]
                mx, my = sum(x) / n, sum(y) / n
                sx = (sum((v - mx) ** 2 for v in x) / divisor + eps) ** 0.5
                sy = (sum((v - my) ** 2 for v in y) / divisor + eps) ** 0.5
                want = sum((u - mx) / sx * (v - my) / sy for u, v in zip(x, y)) / n
                assert abs(got[i, j].item() - want) < 1e-12, (unbiased, eps, i, j)
    batch_norm = nn.BatchNorm1d(d, affine=False).double()  # training mode: batch statistics, eps 1e-5
    torch.testing.assert_close(cross_correlation(a, b), batch_norm(a).T @ batch_norm(b) / n)


def test_covariance_is_the_unbiased_covariance_of_the_columns() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(covariance(x), torch.cov(x.T), rtol=0, atol=1e-12)
    rows = x.tolist()
    means = [sum(r[j] for r in rows) / 7 for j in range(4)]
    want = sum((r[1] - means[1]) * (r[3] - means[3]) for r in rows) / 6
    assert abs(covariance(x)[1, 3].item() - want) < 1e-12


def test_off_diagonal_lists_the_entries_off_the_diagonal_row_by_row() -> None:
    m = torch.arange(9.0).view(3, 3)
    assert off_diagonal(m).tolist() == [1.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    assert off_diagonal(torch.ones(1, 1)).numel() == 0
    with pytest.raises(ValueError, match=r"off_diagonal takes a square matrix, got shape \(2, 3\)"):
        off_diagonal(torch.ones(2, 3))


def test_global_batch_statistics_refuse_one_row_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="cross_correlation needs at least 2 rows in the global batch, got 1"):
        cross_correlation(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="covariance needs at least 2 rows in the global batch, got 1"):
        covariance(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"two \(N, D\) tensors of one shape, got \(4, 3\) and \(4, 2\)"):
        cross_correlation(torch.ones(4, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match=r"covariance takes an \(N, D\) tensor, got shape \(4,\)"):
        covariance(torch.ones(4))
