"""cmp.nn.SupportSet, NNCLR's support set, against a plain list and brute-force search.

The reference keeps the last `size` unit rows pushed in a Python list and finds each
query's neighbour by computing every cosine in a loop. It also checks what lightly's
NNMemoryBankModule does differently: no random initial entries are ever searched, and a
push that runs past the end of the buffer keeps all of its rows.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from cmp.engine.checkpoint import load_checkpoint, save_checkpoint
from cmp.nn import SupportSet


def unit_rows(n: int, dim: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=1)


def brute_force(queries: Tensor, stored: list[list[float]]) -> list[list[float]]:
    """Each query's stored row of highest cosine, the first on a tie, in plain Python."""
    chosen = []
    for q in queries.tolist():
        norm = math.sqrt(sum(x * x for x in q))
        cosines = [sum(a * b for a, b in zip(q, s)) / norm for s in stored]
        chosen.append(stored[cosines.index(max(cosines))])
    return chosen


def test_nearest_matches_brute_force_over_a_stream_of_pushes() -> None:
    rng = random.Random(0)
    support, stored = SupportSet(10, 4, chunk=3), []
    for step in range(12):
        rows = torch.randn(rng.randint(1, 6), 4, generator=torch.Generator().manual_seed(step)) * 3
        support.push(rows)
        stored = (stored + F.normalize(rows, dim=1).tolist())[-10:]
        queries = torch.randn(5, 4, generator=torch.Generator().manual_seed(100 + step))
        assert support.count == len(stored)
        torch.testing.assert_close(support.nearest(queries), torch.tensor(brute_force(queries, stored)))
        by_index = support.values()[support.nearest_indices(queries)]
        assert torch.equal(by_index, support.nearest(queries))


def test_it_starts_empty_and_searches_only_what_was_pushed() -> None:
    support = SupportSet(8, 3)
    assert support.count == 0 and support.values().shape == (0, 3)
    with pytest.raises(ValueError, match="the support set is empty: nothing has been pushed yet"):
        support.nearest(torch.randn(2, 3))
    row = torch.tensor([[1.0, 2.0, 2.0]])
    support.push(row)
    # the opposite direction: every unfilled (zero) slot would score 0 > -1, so searching
    # them would pick one; only the pushed row may be returned
    got = support.nearest(-row)
    torch.testing.assert_close(got, row / 3)


def test_a_push_past_the_end_wraps_and_keeps_every_row() -> None:
    support = SupportSet(10, 2)
    stream = unit_rows(21, 2, seed=1)
    for start in range(0, 21, 7):
        support.push(stream[start : start + 7])
    pointer = int(support.memory.pointer)
    assert pointer == 21 % 10 and support.count == 10
    in_order = torch.cat([support.values()[pointer:], support.values()[:pointer]])
    torch.testing.assert_close(in_order, stream[-10:])


def test_rows_are_stored_unit_length_detached_and_in_the_buffers_dtype() -> None:
    support = SupportSet(4, 3)
    rows = (torch.randn(2, 3) * 5).requires_grad_(True)
    support.push(rows)
    assert not support.values().requires_grad
    torch.testing.assert_close(support.values().norm(dim=1), torch.ones(2))
    torch.set_default_dtype(torch.float64)
    try:
        wide = SupportSet(4, 3)
    finally:
        torch.set_default_dtype(torch.float32)
    wide.push(unit_rows(2, 3, seed=2, dtype=torch.float64))
    assert wide.values().dtype == torch.float64
    assert wide.nearest(unit_rows(3, 3, seed=3, dtype=torch.float64)).dtype == torch.float64


def test_under_bfloat16_autocast_the_search_runs_in_full_precision() -> None:
    support = SupportSet(64, 16)
    support.push(unit_rows(64, 16, seed=4))
    queries = torch.randn(32, 16, generator=torch.Generator().manual_seed(5))
    want = support.nearest_indices(queries)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = support.nearest_indices(queries.bfloat16())
    # bf16 queries lose mantissa bits, but no matmul runs in bf16: the choice is the float32 one
    assert torch.equal(got, support.nearest_indices(queries.bfloat16().float()))
    assert (got == want).float().mean() > 0.8


@pytest.mark.parametrize("chunk", [1, 5, 1024])
def test_the_search_in_chunks_chooses_as_in_one_piece(chunk: int) -> None:
    whole, chunked = SupportSet(50, 8, chunk=10_000), SupportSet(50, 8, chunk=chunk)
    rows = unit_rows(50, 8, seed=6)
    whole.push(rows)
    chunked.push(rows)
    queries = torch.randn(23, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(chunked.nearest_indices(queries), whole.nearest_indices(queries))


def test_a_checkpoint_round_trip_continues_where_it_would_have(tmp_path) -> None:  # type: ignore[no-untyped-def]
    support = SupportSet(6, 3)
    support.push(unit_rows(8, 3, seed=8))
    save_checkpoint(tmp_path / "c.pt", {"support": support.state_dict()})
    restored = SupportSet(6, 3)
    restored.load_state_dict(load_checkpoint(tmp_path / "c.pt")["support"])
    assert set(support.state_dict()) == {"memory.entries", "memory.pointer", "memory.filled"}
    more = unit_rows(4, 3, seed=9)
    for s in (support, restored):
        s.push(more)
    assert restored.count == support.count == 6
    torch.testing.assert_close(restored.values(), support.values())
    queries = torch.randn(5, 3)
    torch.testing.assert_close(restored.nearest(queries), support.nearest(queries))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk >= 1"):
        SupportSet(4, 3, chunk=0)
    with pytest.raises(ValueError, match="needs size >= 1"):
        SupportSet(0, 3)
    assert "size=4, chunk=2" in repr(SupportSet(4, 3, chunk=2))


def test_with_a_faked_world_of_two_every_processs_rows_are_stored_in_rank_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process pushes its share; each then holds the global batch, as one process
    would (two real processes: tests/cmp/test_distributed.py)."""
    world = 2
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)

    def all_gather(parts: list[Tensor], x: Tensor, group: object = None) -> None:
        for r, part in enumerate(parts):
            part.copy_(x + 10 * r)

    monkeypatch.setattr(dist, "all_gather", all_gather)
    mine = torch.rand(3, 2) + 1
    support = SupportSet(8, 2)
    support.push(mine)
    torch.testing.assert_close(support.values(), F.normalize(torch.cat([mine, mine + 10]), dim=1))
