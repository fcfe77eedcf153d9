"""Peak memory is measured per cell: a small cell after a large one reports its own peak."""

from __future__ import annotations

import time

import pytest
import torch

from cmp.engine.environment import PeakMemory, peak_memory_mb, resident_mb

MB = 2**20


@pytest.mark.skipif(resident_mb() is None, reason="no /proc/self/statm to sample")
def test_a_small_cell_after_a_large_one_reports_less() -> None:
    cpu = torch.device("cpu")
    with PeakMemory(cpu) as large:
        block = torch.ones(300 * MB // 4)  # 300 MB, written so that it is resident
        time.sleep(0.2)  # several sampling intervals while it is held
        del block
    with PeakMemory(cpu) as small:
        torch.ones(MB // 4).sum()
        time.sleep(0.05)
    assert large.peak_mb is not None and small.peak_mb is not None
    assert large.peak_mb - small.peak_mb > 200  # the 300 MB was freed: the second cell does not inherit it
    assert small.peak_mb <= (resident_mb() or 0) + 50  # the small cell's peak is about what is resident now
    assert peak_memory_mb(cpu) >= large.peak_mb - 1  # the process's cumulative peak kept the large one


def test_the_sampler_stops_with_its_block_even_when_the_block_raises() -> None:
    cpu = torch.device("cpu")
    memory = PeakMemory(cpu)
    with pytest.raises(RuntimeError), memory:
        raise RuntimeError("cell failed")
    assert memory._thread is None or not memory._thread.is_alive()
    assert memory.peak_mb is not None and memory.peak_mb > 0
