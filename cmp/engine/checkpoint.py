"""Checkpoints: written atomically, read with `weights_only=True`.

A checkpoint is a plain dict of tensors and numbers: model (learner state, which holds
the target's EMA weights and the queue), optimizer, schedule, the data-order and
augmentation generator, the torch RNG, and the position (epoch, step).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from cmp.errors import CheckpointError

FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, key: str | None = None) -> dict[str, Any]:
    """Read a checkpoint (tensors only); `CheckpointError` if unreadable or for another run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("checkpoint file not found", where=str(path)) from None
    except Exception as exc:  # corrupt, truncated or not a torch file at all
        raise CheckpointError(
            f"cannot read checkpoint: corrupt, truncated or not a cmp checkpoint ({_detail(exc)})", where=str(path)
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a cmp checkpoint (or of another format version)", where=str(path))
    if key is not None and state.get("key") != key:
        raise CheckpointError(
            f"checkpoint belongs to configuration {state.get('key')}, not {key}", where=str(path)
        )
    return state


def _detail(exc: Exception) -> str:
    """The loader's own reason, without PyTorch's advice to retry with `weights_only=False`
    (unsafe: it runs arbitrary code from the file, and a corrupt file needs no such retry)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        return " ".join(reason.split()) or type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
