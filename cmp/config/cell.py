"""The cell: one fully resolved run, its configuration as plain data, and its key.

What a cell holds is decided in `cmp.config.cells` (resolution); this module says what it is
and how its key, which names its run directory and cached result, is computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmp.config.recipe import DataSection, TrainSection
from cmp.weights import WeightsFile

CONFIG_FORMAT = 3
"""Version of the resolved configuration's shape and of what the key leaves out; part of
every cell's key (3: `checkpoint_minutes`, and `epochs` under a step budget, left out)."""

UNHASHED_TRAIN_KEYS = ("log_every", "threads", "backend", "checkpoint_minutes")
"""How a run is logged, threaded, joined and checkpointed: not what it computes."""


UNWRITTEN_WHEN_NONE = ("objective",)
"""Optional parts added after `CONFIG_FORMAT` 3 was fixed: written only when chosen, so the
keys (and cached results) of cells without one stay what they were."""


@dataclass(frozen=True)
class ResolvedChoice:
    """A validated slot choice, the key path its name came from, and where each parameter
    the recipe layers set came from (`preset 'moco'.optimizer.params.lr_scaling` for one a
    preset set and a later layer naming the same component kept): `cmp run --dry-run`
    shows it."""

    slot: str
    name: str
    params: dict[str, Any]
    where: str
    param_sources: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": plain(self.params)}


@dataclass(frozen=True)
class StepOptions:
    """How views meet in a step (see `cmp.api.slots.STEP_OPTIONS`)."""

    pairs: str | tuple[tuple[int, int], ...] = "symmetric"
    joint_forward: bool = False


@dataclass(frozen=True)
class Cell:
    """One run: a method with every choice resolved, ready to train and evaluate.

    `data` holds the data set's validated parameters; `parts` one resolved choice per key
    of `cmp.api.slots.PARTS` (None for an optional part left out).
    """

    recipe: str
    method: str
    data: DataSection
    train: TrainSection
    parts: dict[str, ResolvedChoice | None]
    step: StepOptions
    evaluators: dict[str, ResolvedChoice]
    baselines: tuple[ResolvedChoice, ...]
    sweep: dict[str, Any] = field(default_factory=dict)

    def part(self, key: str) -> ResolvedChoice:
        """A part that every method has (`encoder`, `loss`...)."""
        choice = self.parts[key]
        assert choice is not None, f"part '{key}' is optional"
        return choice

    @property
    def name(self) -> str:
        suffix = ",".join(f"{k}={short(v)}" for k, v in self.sweep.items())
        return f"{self.method}[{suffix}]" if suffix else self.method

    def weights_files(self) -> dict[str, WeightsFile]:
        """Each part loaded from a weights file (an encoder's `weights:`), by part key."""
        return {key: value for key, choice in self.parts.items() if choice is not None
                for value in choice.params.values() if isinstance(value, WeightsFile)}

    def config(self) -> dict[str, Any]:
        """The resolved configuration as plain data (what `config.yaml` holds); with
        `weights`, each weights file's path, the sha256 of its contents and the `{seed}`
        pattern it came from, when a part has one."""
        files = {key: {"path": str(f), "sha256": f.sha256, **({"pattern": f.pattern} if f.pattern else {})}
                 for key, f in self.weights_files().items()}
        return {**({"weights": files} if files else {}),
            "recipe": self.recipe,
            "method": self.method,
            "sweep": plain(self.sweep),
            "data": plain(self.data.model_dump()),
            "train": plain(self.train.model_dump()),
            "parts": {k: (v.to_dict() if v else None) for k, v in self.parts.items() if v or k not in UNWRITTEN_WHEN_NONE},
            "step": plain(dataclasses.asdict(self.step)),
            "eval": {k: v.to_dict() for k, v in self.evaluators.items()},
            "baselines": [b.to_dict() for b in self.baselines],
        }

    def key(self) -> str:
        """A content hash of everything that changes the result (baselines do not; nor does
        `train.epochs` when `train.steps` decides the budget); a weights file's contents
        count through their sha256."""
        config = self.config()
        left_out = (*UNHASHED_TRAIN_KEYS, "epochs") if self.train.steps is not None else UNHASHED_TRAIN_KEYS
        config["train"] = {k: v for k, v in config["train"].items() if k not in left_out}
        config["format"] = CONFIG_FORMAT
        for unhashed in ("recipe", "sweep", "baselines"):
            config.pop(unhashed)
        for file in config.get("weights", {}).values():
            file.pop("pattern", None)  # the file it named for this seed is what counts
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]



def plain(value: Any) -> Any:
    """A configuration value as JSON's types (mappings, lists, text for paths)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (Path, str)):  # a str subclass too (a `WeightsFile`): YAML writes plain text only
        return str(value)
    return value


def short(value: Any) -> str:
    """A value as compact JSON, text unquoted: how cell names and the dry run show it."""
    return json.dumps(plain(value), separators=(",", ":")).strip('"')
