"""Memory stays bounded: streaming 80 large images takes no more memory at its peak than 20.

The peak is the process's resident set high-water mark (Linux's VmHWM, reset through
/proc/self/clear_refs before each pass), measured as growth over the resident set at
the reset, with the decoding in this process (no workers).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cmp.streaming import StreamingSource, build_index
from tests.cmp.streaming.images import write_jpegs

SIDE = 500
STATUS = Path("/proc/self/status")
CLEAR = Path("/proc/self/clear_refs")


def kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", STATUS.read_text()).group(1))  # type: ignore[union-attr]


def peak_growth(work: Callable[[], None]) -> int:
    """Bytes by which the resident set's peak during `work` exceeds the resident set before it."""
    CLEAR.write_text("5")
    before = kib("VmRSS")
    work()
    return (kib("VmHWM") - before) * 1024


def stream(root: Path, cache: Path) -> Callable[[], None]:
    index = build_index(root, "train", cache_dir=cache)
    source = StreamingSource(index, batch_size=4, size=64, num_workers=0)

    def two_epochs() -> None:
        for epoch in range(2):
            for _ in source.epoch(epoch, torch.randperm(len(index))):
                pass

    return two_epochs


@pytest.mark.skipif(not CLEAR.exists(), reason="needs Linux's /proc/self/clear_refs to reset the peak")
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path: Path, cache: Path) -> None:
    originals = write_jpegs(tmp_path / "few" / "train" / "only", 20, seed=0, sizes=(SIDE, SIDE), grey_every=0)
    (tmp_path / "many" / "train" / "only").mkdir(parents=True)
    for copy in range(4):
        for path in originals:
            shutil.copy(path, tmp_path / "many" / "train" / "only" / f"{copy}_{path.name}")
    few, many = stream(tmp_path / "few", cache), stream(tmp_path / "many", cache)
    few()  # warm-up: the allocator's pools and torch's lazy set-up
    growth_few, growth_many = peak_growth(few), peak_growth(many)
    decoded_extra = 60 * SIDE * SIDE * 3  # what keeping the 60 more images decoded would add
    assert growth_many - growth_few < decoded_extra / 4, f"peak growth {growth_few} B for 20 images, {growth_many} B for 80"
