"""The guide's `cmp.nn` example runs and does what its text says.

The python block under "## Building blocks (cmp.nn)" in docs/plugins.md is executed on its
own, and its `RecentKeys` (a queue of normalised past keys) and `EmaTarget` (a frozen EMA
copy of the online network) are checked against plain references.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cmp.api.contracts import NegativeSource, PairBatch, TargetBranch

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
HEADING = "## Building blocks (cmp.nn)"
FIRST_PYTHON_BLOCK = re.compile(r"```python\n(?P<code>.*?)\n```", re.S)


def snippet() -> str:
    """The first python block between the heading and the next `## ` heading."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(f"\n{HEADING}\n")
    end = text.find("\n## ", start + 1)
    match = FIRST_PYTHON_BLOCK.search(text[start : end if end != -1 else len(text)])
    assert match is not None, f"no python block under {HEADING!r}"
    return match["code"]


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    exec(compile(snippet(), f"{GUIDE}:{HEADING}", "exec"), namespace)
    return namespace


def batch_of(keys: torch.Tensor) -> PairBatch:
    ids = torch.arange(keys.shape[0])
    return PairBatch(keys, keys, ids, keys, ids)


def by_first_column(rows: torch.Tensor) -> torch.Tensor:
    return rows[rows[:, 0].argsort()]


def test_the_example_defines_a_negative_source_and_a_target(example: dict[str, Any]) -> None:
    assert issubclass(example["RecentKeys"], NegativeSource)
    assert issubclass(example["EmaTarget"], TargetBranch)


def test_recent_keys_are_the_last_keys_of_earlier_steps_normalised(example: dict[str, Any]) -> None:
    source = example["RecentKeys"](dim=3, size=5)
    assert source.negatives(batch_of(torch.randn(2, 3))).bank.shape == (0, 3)  # no earlier step
    stream = torch.randn(9, 3) * 4
    for end in (3, 6, 9):
        source.update(batch_of(stream[end - 3 : end]))
        negatives = source.negatives(batch_of(stream[:2]))
        assert negatives.valid is None  # every stored key is a negative of every anchor
        expected = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in stream[:end].tolist()[-5:]]
        torch.testing.assert_close(by_first_column(negatives.bank), by_first_column(torch.tensor(expected)))
    assert source.memory.full


def test_ema_target_is_a_frozen_copy_that_follows_the_online_network(example: dict[str, Any]) -> None:
    torch.manual_seed(0)
    online = nn.Linear(4, 2)
    target = example["EmaTarget"](online, m=0.9)
    views = [torch.randn(3, 4), torch.randn(3, 4)]
    positives = target.positives(views, [1], {})
    torch.testing.assert_close(positives[1], online(views[1]).detach())
    assert not positives[1].requires_grad
    assert all(p.requires_grad for p in online.parameters())  # only the copy is frozen
    assert all(not p.requires_grad for p in target.network.parameters())

    before = [p.detach().clone() for p in target.network.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(-2.0).add_(1.0)
    target.update(online, 0.5, batch_of(torch.randn(3, 2)))
    for t, b, o in zip(target.network.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o.detach())
