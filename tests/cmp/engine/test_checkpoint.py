"""Checkpoints: atomic writes, weights-only reads, clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from cmp.engine.checkpoint import _detail, load_checkpoint, save_checkpoint
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


def raw_error(path: Path) -> Exception:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # what PyTorch itself says about the file
        return exc
    raise AssertionError(f"{path} loads")


@pytest.mark.parametrize("content", [b"hello\nworld", b"\x80\x02}q\x00.", b""])
def test_an_unreadable_file_is_named_with_the_loaders_own_first_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    exc = raw_error(path)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert info.value.message == f"cannot read checkpoint: corrupt, truncated or not a cmp checkpoint ({detail})"


def test_refused_code_is_named_without_pytorchs_advice_to_load_it_anyway(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        torch.save({"format": 1, "x": Payload()}, f, pickle_module=pickle)
    assert "weights_only" in str(raw_error(path))  # PyTorch's message advises the unsafe retry
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = info.value.message
    assert message.startswith(
        "cannot read checkpoint: corrupt, truncated or not a cmp checkpoint (Unsupported global: GLOBAL print was not"
    )
    assert "weights_only" not in message and "Check the documentation" not in message
    assert "\n" not in message and "  " not in message and message.endswith(")")


def test_a_refusal_without_a_reason_is_named_by_its_type() -> None:
    empty = pickle.UnpicklingError("Weights only load failed. WeightsUnpickler error:  \n\nCheck the documentation of torch.load")
    assert _detail(empty) == "UnpicklingError"
    assert _detail(EOFError()) == "EOFError"
    assert _detail(ValueError("first line\nsecond")) == "ValueError: first line"


def test_a_checkpoint_is_read_to_the_cpu_weights_only_whatever_torchs_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"key": "abc"})
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def recording_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    assert load_checkpoint(path, "abc")["key"] == "abc"
    assert calls == [{"map_location": "cpu", "weights_only": True}]


def test_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pt"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(missing)
    assert (info.value.message, info.value.where) == ("checkpoint file not found", str(missing))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(corrupt)
    assert info.value.where == str(corrupt)


def test_other_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"hello": 1}, foreign)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(foreign)
    assert (info.value.message, info.value.where) == ("not a cmp checkpoint (or of another format version)", str(foreign))
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"key": "abc"})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(other, "xyz")
    assert (info.value.message, info.value.where) == ("checkpoint belongs to configuration abc, not xyz", str(other))


def test_the_temporary_file_sits_beside_the_checkpoint_and_goes_when_saving_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a" / "b" / "checkpoint.pt"  # missing folders are made
    renamed: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def recording_replace(src, dst):  # type: ignore[no-untyped-def]
        renamed.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    save_checkpoint(path, {"key": "abc"})
    ((tmp, final),) = renamed
    assert final == path and tmp.parent == path.parent  # same folder: the rename is atomic
    assert tmp.name.startswith("checkpoint.pt.") and tmp.name.endswith(".tmp")
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]

    def failing_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"key": "def"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary left
    assert load_checkpoint(path)["key"] == "abc"  # the previous checkpoint is intact
