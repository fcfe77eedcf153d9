"""TensorBoard: one event directory per run (`<run dir>/tensorboard`), on lifecycle hooks."""

from __future__ import annotations

import json
from typing import Any

from cmp import hookimpl
from cmp.api.results import RunResult

_writers: dict[str, Any] = {}


@hookimpl
def cmp_run_start(run: Any) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run.dir / "tensorboard"))
    writer.add_text("config", "```\n" + json.dumps(run.config, indent=2) + "\n```")
    _writers[str(run.dir)] = writer


def _scalars(run: Any, prefix: str, metrics: dict[str, float], step: int) -> None:
    writer = _writers.get(str(run.dir))
    if writer is not None:
        for name, value in metrics.items():
            writer.add_scalar(f"{prefix}/{name}", value, step)


@hookimpl
def cmp_step_end(run: Any, step: int, metrics: dict[str, float]) -> None:
    _scalars(run, "train", metrics, step)


@hookimpl
def cmp_epoch_end(run: Any, epoch: int, metrics: dict[str, float]) -> None:
    _scalars(run, "epoch", metrics, epoch)


@hookimpl
def cmp_evaluation_done(run: Any, epoch: int, results: dict[str, float]) -> None:
    _scalars(run, "eval", results, epoch)


@hookimpl
def cmp_run_end(run: Any, result: RunResult) -> None:
    """Close the run's writer, first logging its final metrics (every evaluator's) against its config."""
    writer = _writers.pop(str(run.dir), None)
    if writer is None:
        return
    metrics = {f"hparam/{name}": value for name, value in result.metrics.items()}
    if metrics:
        writer.add_hparams(_flat_hparams(run.config), metrics, run_name=".")
    writer.close()


def _flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"parts.loss.name": "nt_xent", ...} with scalar values only."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_hparams(value, name + "."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
    return flat
