"""What a run is and what it produced: the typed records every layer shares.

`RunInfo` is what lifecycle hooks are told about the run in progress. `RunResult` is
what a cell's run writes to `result.json` and what the report, the terminal summary and
TensorBoard read; `BaselineResult` the same for a baseline. Both round-trip through
JSON (`to_json` / `from_json`). A `result.json` of an older format still loads: format 1
(no `format` field) has the same fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

RESULT_FORMAT = 2
"""Version of `result.json`; 1 is the unversioned format of cmp 0.1, read as is."""
EMBEDDING_FILE = "features.npz"
"""A run directory's sample of test features and labels (`eval.embedding_map`), drawn as a map by the report."""


@dataclass
class RunInfo:
    """What lifecycle hooks learn about the run they are called for."""

    name: str
    recipe: str
    method: str
    key: str
    dir: Path
    config: dict[str, Any]
    device: Any
    epochs: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is shown: its label, whether it is a fraction shown as a percentage,
    and whether higher is better (for verdicts and "best" lines)."""

    label: str
    percent: bool = True
    higher_is_better: bool = True


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude={"cached"})

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Parse a JSON document; `ValueError` with pydantic's first message if it does not fit."""
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


class TrainStats(_Record):
    """What training measured."""

    epochs: int
    steps: int
    batch_size: int
    train_time_s: float
    images_per_s: float
    loss_per_epoch: list[float]
    final_loss: float
    resumed_from_step: int | None = None
    effective_lr: float | None = None
    images_seen: int | None = None


class RunResult(_Record):
    """One cell's outcome: `status` ok with metrics, or failed with its reason."""

    format: int = RESULT_FORMAT
    recipe: str
    method: str
    cell: str
    key: str
    sweep: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"
    status: Literal["ok", "failed"]
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    metric_info: dict[str, MetricInfo] = Field(default_factory=dict)
    train: TrainStats | None = None
    eval_history: list[dict[str, float]] = Field(default_factory=list)
    peak_memory_mb: float | None = None
    train_images: int | None = None
    test_images: int | None = None
    wall_time_s: float = 0.0
    eval_time_s: float | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    encoder_input: str | None = None
    """How the encoder's input was made from the data when it differs (a grey data set
    repeated into 3 channels, resized, normalised as the weights were trained), as the
    encoder's `input_note` says; None when the encoder takes the data as it is."""
    cached: bool = Field(default=False, exclude=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class BaselineResult(_Record):
    """One baseline's outcome, cached in `<runs>/baselines/<name>-<key>.json`."""

    format: int = RESULT_FORMAT
    baseline: str
    label: str
    key: str
    seed: int | None = None
    reference: Literal["floor", "ceiling"] = "floor"
    """A floor is what every method should beat (flagged in reports when one does not); a
    ceiling an upper reference (a supervised encoder)."""
    status: Literal["ok", "failed"] = "ok"
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    wall_time_s: float = 0.0
    cached: bool = Field(default=False, exclude=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"
