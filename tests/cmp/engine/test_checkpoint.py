"""Checkpoints: atomic writes, weights-only reads, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from cmp.engine.checkpoint import load_checkpoint, save_checkpoint
from cmp.errors import CheckpointError


def test_round_trip_and_no_temporary_left(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"key": "abc", "w": torch.arange(3)})
    state = load_checkpoint(path, "abc")
    assert torch.equal(state["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_wrong_run_corrupt_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"key": "abc"})
    with pytest.raises(CheckpointError, match="belongs to configuration abc, not xyz"):
        load_checkpoint(path, "xyz")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    torch.save({"hello": 1}, path)
    with pytest.raises(CheckpointError, match="not a cmp checkpoint"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        torch.save({"format": 1, "x": Payload()}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out
