"""The MoCo queue: wrap-around without dropping keys, fill, checkpoint round trip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cmp.api.contracts import PairBatch
from cmp_plugins.queue import QueueNegatives, queue


def batch_of(keys: torch.Tensor) -> PairBatch:
    ids = torch.arange(keys.shape[0])
    return PairBatch(keys, keys, ids, keys, ids)


def test_wraps_around_without_dropping_keys() -> None:
    queue = QueueNegatives(dim=3, size=10)
    stream = F.normalize(torch.randn(12, 3), dim=1)
    queue.update(batch_of(stream[:4]))  # 0..3
    queue.update(batch_of(stream[4:8]))  # 4..7
    assert queue.negatives(batch_of(stream[:1])).bank.shape[0] == 8  # only the filled part
    queue.update(batch_of(stream[8:12]))  # 8, 9 at the end, then 10, 11 wrap to the start
    torch.testing.assert_close(queue.past_keys.entries[8:10], stream[8:10])
    torch.testing.assert_close(queue.past_keys.entries[0:2], stream[10:12])
    torch.testing.assert_close(queue.past_keys.entries[2:8], stream[2:8])
    assert int(queue.past_keys.pointer) == 2 and int(queue.past_keys.filled) == 10
    assert queue.stats() == {"queue_fill": 1.0}


def test_a_batch_larger_than_the_queue_keeps_its_last_keys() -> None:
    queue = QueueNegatives(dim=2, size=4)
    queue.update(batch_of(F.normalize(torch.randn(3, 2), dim=1)))
    big = F.normalize(torch.randn(6, 2), dim=1)
    queue.update(batch_of(big))
    def by_first(x: torch.Tensor) -> torch.Tensor:
        return x[x[:, 0].argsort()]

    torch.testing.assert_close(by_first(queue.past_keys.entries), by_first(big[-4:]))


def test_keys_enter_normalised_and_detached() -> None:
    queue = QueueNegatives(dim=4, size=8)
    raw = torch.randn(3, 4, requires_grad=True) * 5
    queue.update(batch_of(raw))
    assert not queue.past_keys.entries.requires_grad
    torch.testing.assert_close(queue.past_keys.entries[:3].norm(dim=1), torch.ones(3))


def test_checkpoint_round_trip_restores_keys_and_pointer() -> None:
    queue = QueueNegatives(dim=3, size=10)
    for _ in range(3):
        queue.update(batch_of(torch.randn(4, 3)))
    restored = QueueNegatives(dim=3, size=10)
    restored.load_state_dict(queue.state_dict())
    assert torch.equal(restored.past_keys.entries, queue.past_keys.entries)
    nxt = torch.randn(4, 3)
    queue.update(batch_of(nxt))
    restored.update(batch_of(nxt))
    assert torch.equal(restored.past_keys.entries, queue.past_keys.entries)
    assert int(restored.past_keys.pointer) == int(queue.past_keys.pointer) == 6


def test_a_checkpoint_saved_before_the_ring_buffer_still_loads() -> None:
    queue = QueueNegatives(dim=3, size=10)
    for _ in range(3):
        queue.update(batch_of(torch.randn(4, 3)))
    ring = queue.past_keys
    legacy = {"keys": ring.entries.clone(), "pointer": ring.pointer.clone(), "filled": ring.filled.clone()}
    restored = QueueNegatives(dim=3, size=10)
    restored.load_state_dict(legacy)
    assert torch.equal(restored.past_keys.entries, ring.entries)
    nxt = torch.randn(4, 3)
    queue.update(batch_of(nxt))
    restored.update(batch_of(nxt))
    assert torch.equal(restored.past_keys.entries, queue.past_keys.entries)
    assert int(restored.past_keys.pointer) == int(queue.past_keys.pointer) == 6
    assert restored.stats() == queue.stats() == {"queue_fill": 1.0}


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=24),
    batches=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8),
    dim=st.integers(min_value=1, max_value=3),
)
def test_the_queue_holds_exactly_the_last_size_keys_pushed(size: int, batches: list[int], dim: int) -> None:
    """Any batch sizes and queue size: after every step the queue's negatives are the last
    `size` keys of the stream (a plain list), laid out as slots written one key at a time
    from the pointer (a batch larger than the queue writes only its last `size` keys)."""
    queue = QueueNegatives(dim=dim, size=size)
    generator = torch.Generator().manual_seed(size * 1000 + len(batches))
    stream: list[list[float]] = []
    slots: list[list[float]] = []
    pointer = 0
    for n in batches:
        raw = torch.randn(n, dim, generator=generator) + 0.1  # no all-zero row
        queue.update(batch_of(raw))
        keys = F.normalize(raw, dim=1).tolist()
        stream += keys
        for key in keys[-size:]:
            if len(slots) < size:
                slots.append(key)
            else:
                slots[pointer] = key
            pointer = (pointer + 1) % size
        last = stream[-size:]
        bank = queue.negatives(batch_of(raw[:1])).bank
        assert sorted(map(tuple, bank.tolist())) == sorted(map(tuple, last))
        assert bank.tolist() == slots
        assert int(queue.past_keys.pointer) == pointer
        assert int(queue.past_keys.filled) == len(last) == min(size, len(stream))
        assert queue.stats() == {"queue_fill": len(last) / size}


def test_the_factory_default_and_state_dicts_with_both_or_neither_layout() -> None:
    assert queue(dim=8).size == 4096 and queue(dim=8, size=7).size == 7
    saved = QueueNegatives(dim=3, size=4)
    saved.update(batch_of(torch.randn(3, 3)))
    state = saved.state_dict()
    # both layouts present: the ring buffer's keys are the real ones, the legacy ones ignored
    both = {**state, "keys": torch.zeros(4, 3), "pointer": torch.tensor(0), "filled": torch.tensor(0)}
    restored = QueueNegatives(dim=3, size=4)
    restored.load_state_dict(both, strict=False)
    assert torch.equal(restored.past_keys.entries, saved.past_keys.entries) and restored.past_keys.count == 3
    # neither: nothing to rename, the keys are reported missing
    missing = QueueNegatives(dim=3, size=4).load_state_dict({}, strict=False).missing_keys
    assert sorted(missing) == ["past_keys.entries", "past_keys.filled", "past_keys.pointer"]
