"""A cell's run directory: where its files are, what is cached, what a run would do.

`<out>/<recipe>/<method>-<key>/` holds `config.yaml` (the resolved configuration),
`checkpoint.pt` (written atomically), `tensorboard/`, `error.txt` after a crash, and
`result.json` (a `RunResult`). A cell whose `result.json` says ok for the same key is
not recomputed; a cell with a checkpoint resumes from it. An unreadable checkpoint is set
aside (renamed, never deleted) and the cell trains from scratch, so a corrupt file cannot
keep a cell from ever finishing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cmp.api.results import RESULT_FORMAT, RunResult
from cmp.config.cells import Cell
from cmp.engine.checkpoint import load_checkpoint
from cmp.errors import CheckpointError

RESULT = "result.json"
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
ERROR = "error.txt"
MANIFEST = "manifest.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    text = data.to_json() if hasattr(data, "to_json") else json.dumps(data, indent=2, default=str)
    tmp.write_text(text)
    tmp.replace(path)


def read_result(path: Path) -> RunResult | None:
    """A `result.json`, or None when it is missing or not a result (then it is recomputed)."""
    try:
        return RunResult.from_json(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class RunDirectory:
    """The files of one cell under `out_dir`."""

    out_dir: Path
    cell: Cell

    @property
    def path(self) -> Path:
        return self.out_dir / self.cell.recipe / f"{self.cell.method}-{self.cell.key()}"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def result_path(self) -> Path:
        return self.path / RESULT

    def cached(self) -> RunResult | None:
        """The finished result of this very configuration, if there is one."""
        result = read_result(self.result_path) if self.result_path.is_file() else None
        if result is None or result.key != self.cell.key() or not result.ok:
            return None
        return result.model_copy(update={"cached": True})

    def read_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from; None when there is none. `CheckpointError` if unreadable."""
        if not self.checkpoint.is_file():
            return None
        return load_checkpoint(self.checkpoint, self.cell.key())

    def set_aside(self, suffix: str = "unreadable") -> Path:
        """Rename the checkpoint out of the way (`checkpoint.pt.unreadable-N`) and return the new path."""
        n = 1
        while (target := self.checkpoint.with_name(f"{CHECKPOINT}.{suffix}-{n}")).exists():
            n += 1
        self.checkpoint.rename(target)
        return target

    def plan(self) -> str:
        """What running the cell would do: reuse its result, resume, retry, or train."""
        if self.cached() is not None:
            return "cached"
        failed = self.result_path.is_file()
        try:
            state = self.read_checkpoint()
        except CheckpointError as exc:
            where = f"unreadable checkpoint ({exc.message}): set aside, train from scratch"
        else:
            where = "train" if state is None else f"resume at step {int(state['position']['step'])}"
        if not failed:
            return where
        return "failed before; retry" if where == "train" else f"failed before; {where}"

    def prepare(self) -> None:
        """Create the directory and write the resolved configuration."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG).write_text(yaml.safe_dump(self.cell.config(), sort_keys=False))

    def write_result(self, result: RunResult) -> None:
        write_json(self.result_path, result)

    def write_error(self, text: str) -> Path:
        path = self.path / ERROR
        path.write_text(text)
        return path


def older_results(recipe_dir: Path) -> int:
    """How many results under a recipe's runs directory an older cmp wrote (not reused)."""
    count = 0
    for path in recipe_dir.glob(f"*/{RESULT}"):
        try:
            fmt = json.loads(path.read_text()).get("format", 1)
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        count += fmt < RESULT_FORMAT
    return count


def finished_results(recipe_dir: Path) -> list[RunResult]:
    """Every finished (ok) result under a recipe's runs directory, whatever its configuration:
    the timings a plan's estimate is made from."""
    found = (read_result(path) for path in sorted(recipe_dir.glob(f"*/{RESULT}")))
    return [r for r in found if r is not None and r.ok and r.train is not None and r.train.images_seen]


def estimate_seconds(cell: Cell, train_images: int, timings: list[RunResult]) -> float | None:
    """How long training and evaluating `cell` should take, judged from finished cells.

    Training time per image seen (the median over cells of the same method where there
    are any, else over all) times the images this cell will see, plus the rest of their
    wall time (building, evaluation) scaled by the size of the training split. None when
    nothing has finished yet.
    """
    same = [r for r in timings if r.method == cell.method] or timings
    if not same:
        return None
    steps = train_images // cell.train.batch_size
    seen = cell.train.budget(steps)[1] * cell.train.batch_size
    per_image = _median([r.train.train_time_s / r.train.images_seen for r in same if r.train and r.train.images_seen])
    rest = _median([
        max(0.0, r.wall_time_s - r.train.train_time_s) * train_images / (r.train_images or train_images)
        for r in same if r.train
    ])
    return per_image * seen + rest


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
