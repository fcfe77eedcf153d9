"""One cell's work: data, parts, training, evaluation -> the fields of its `RunResult`.

Read top to bottom: take the data set, check the batch fits it, build every part from
the slot table, resume from a checkpoint if there is one, train through the `Trainer`,
evaluate the encoder with every evaluator, and return what was measured.

The data set is a `cmp.engine.data.DataSet`: in memory it goes to the device whole; a
streamed one becomes a `cmp.streaming.StreamingSource` for training (this process's rows
of each batch, decoded in worker processes) and `StreamedSplits` for evaluation (decoded
batch by batch). This module does not ask which.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from cmp.api.registry import Registry
from cmp.api.results import MetricInfo, RunInfo, TrainStats
from cmp.config.cells import EVALUATION_PARTS, Cell
from cmp.config.recipe import DataSection
from cmp.distributed import Processes
from cmp.engine.build import BuildContext, build, build_model, build_parts
from cmp.engine.data import Data, dataset
from cmp.engine.environment import PeakMemory
from cmp.engine.rundir import CHECKPOINT
from cmp.engine.trainer import TrainConfig, Trainer
from cmp.errors import CmpError
from cmp.evaluation.features import Progress, evaluate_representation, save_embedding_sample
from cmp.evaluation.splits import Splits, seeded_rows


@dataclass(frozen=True)
class CellServices:
    """What one cell's work needs from around it (the runner makes one).

    registry:  the components, by slot and name
    hooks:     the plugins' hook relay (`pluggy.HookRelay`), or one that does nothing on
               a process other than the main one
    processes: the processes training this cell together
    echo:      where messages for the user go
    data_for:  a `data` section's data set, loaded once per process
    """

    registry: Registry
    hooks: Any
    processes: Processes
    echo: Callable[[str], None]
    data_for: Callable[[DataSection], Data]


def train_and_evaluate(services: CellServices, cell: Cell, run: RunInfo, resume: dict[str, Any] | None) -> dict[str, Any]:
    """Train `cell` (from `resume` when given) and evaluate it; raises on failure.

    `train.threads` holds for this cell only: the process's thread count is restored
    after it, so one cell's setting does not change the next cell's arithmetic.
    """
    threads = torch.get_num_threads()
    if cell.train.threads:
        torch.set_num_threads(cell.train.threads)
    try:
        return _train_and_evaluate(services, cell, run, resume)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate(services: CellServices, cell: Cell, run: RunInfo, resume: dict[str, Any] | None) -> dict[str, Any]:
    if cell.train.evaluate_only:
        return evaluate_only(services, cell, run)
    train = cell.train
    data = dataset(services.data_for(cell.data))
    device = run.device
    count = data.train_count()
    if train.batch_size > count:
        raise CmpError(
            f"batch size {train.batch_size} is larger than the {count} training images",
            where="train.batch_size",
        )
    info = data.info()
    steps_per_epoch = count // train.batch_size
    model = build_model(cell, services.registry, info, steps_per_epoch, device)
    evaluators = {name: build(services.registry, choice) for name, choice in cell.evaluators.items()}
    components = {name: services.registry.get("evaluators", choice.name) for name, choice in cell.evaluators.items()}
    during_training = {name: e for name, e in evaluators.items() if components[name].capabilities.during_training}
    processes = services.processes
    images = data.training_input(train.batch_size, train.seed, device, processes)
    all_splits = data.evaluation_splits(device)
    training_splits = fixed_subset(all_splits, train.eval_subset)
    generator = torch.Generator(device=device).manual_seed(train.seed)
    augment_generator = None
    if processes.distributed:  # one data order for all processes, its own augmentation stream each
        augment_generator = torch.Generator(device=device).manual_seed(train.seed * 1_000_003 + processes.rank + 1)
    epochs, total_steps = train.budget(steps_per_epoch)
    run.epochs, run.steps_per_epoch, run.total_steps = epochs, steps_per_epoch, total_steps
    eval_seconds = 0.0

    def evaluate(epoch: int, final: bool = False) -> dict[str, float]:
        """All evaluators on all images when `final`; else those run during training, on the subset."""
        nonlocal eval_seconds
        started = time.perf_counter()
        chosen = evaluators if final else during_training
        splits = all_splits if final else training_splits
        results = evaluate_representation(
            model.learner.encoder, model.augmentation.preprocess, splits, chosen,
            progress=progress_reporter(services.hooks, run),
            channels_last=train.channels_last, processes=processes, augmentation=model.augmentation,
        )
        if final or epoch < epochs:  # the curve's extra last point is not a new evaluation
            services.hooks.cmp_evaluation_done(run=run, epoch=epoch, results=results)
        eval_seconds += time.perf_counter() - started
        return results

    trainer = Trainer(
        model.learner, model.augmentation, images, model.optimizer, model.schedule, generator,
        TrainConfig(
            epochs=epochs, batch_size=train.batch_size, log_every=train.log_every,
            eval_every=train.eval_every, precision=train.precision, channels_last=train.channels_last,
            checkpoint_seconds=train.checkpoint_minutes * 60.0, collapse_std=train.collapse_std,
            micro_batch=train.micro_batch, max_steps=total_steps,
        ),
        run, services.hooks, evaluate, run.dir / CHECKPOINT, processes, augment_generator, device,
    )
    resumed_from = None
    if resume is not None:
        trainer.load_state_dict(resume)
        resumed_from = trainer.position.step
        services.echo(f"cmp: {cell.name}: resuming from step {resumed_from} ({run.dir / CHECKPOINT})")
    services.hooks.cmp_run_start(run=run)
    with PeakMemory(device) as memory:  # this cell's peak, not the process's so far
        try:
            summary = trainer.fit({"key": cell.key()})
        finally:
            close = getattr(images, "close", None)  # a streaming source's decoding workers: not needed for evaluation
            if close is not None:
                close()
        final = evaluate(epochs, final=True)
        if processes.is_main:
            save_embedding_sample(evaluators, run.dir)  # only where `eval.embedding_map` asked for one
        history = summary.eval_history + [{"epoch": epochs, **final}]
        if summary.eval_history and training_splits is not all_splits:  # the curve ends on the subset it ran on
            history[-1] = {"epoch": epochs, **evaluate(epochs)}
    return {
        "metrics": final,
        "metric_info": metric_info(services.registry, cell, final),
        "train": TrainStats(
            epochs=epochs, steps=summary.steps, batch_size=train.batch_size,
            train_time_s=summary.train_seconds, images_per_s=summary.images_per_second,
            loss_per_epoch=summary.loss_per_epoch, final_loss=summary.loss_per_epoch[-1],
            resumed_from_step=resumed_from, effective_lr=_base_lr(model.optimizer),
            images_seen=summary.images_seen,
        ),
        "eval_history": history,
        "eval_time_s": eval_seconds,
        "peak_memory_mb": memory.peak_mb,
        "train_images": count,
        "test_images": all_splits.sizes()[1],
        "encoder_input": getattr(model.learner.encoder, "input_note", None),
    }


def check_weights(services: CellServices, cells: Iterable[Cell]) -> None:
    """Each encoder loaded from a weights file, built once before any cell runs, so a file
    that does not fit is one `CheckpointError` naming it (exit 2), not a failed cell per seed."""
    seen: set[str] = set()
    for cell in cells:
        choice = cell.parts.get("encoder")
        if choice is None or "encoder" not in cell.weights_files():
            continue
        key = json.dumps([choice.to_dict(), cell.data.model_dump()], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            build(services.registry, choice, dataset(services.data_for(cell.data)).info())


def evaluate_only(services: CellServices, cell: Cell, run: RunInfo) -> dict[str, Any]:
    """An evaluate-only cell (`train.epochs: 0`): the encoder built as the cell's seed makes
    it (and loaded from its weights file), evaluated by every evaluator on every image;
    no optimizer, no augmented views, no training loop."""
    data = dataset(services.data_for(cell.data))
    device = run.device
    info = data.info()
    torch.manual_seed(cell.train.seed)  # as `build_model` seeds it: the same random encoder as the random_init baseline
    context = BuildContext(info, cell.train.batch_size, 1, 0)
    build_parts(cell, services.registry, context, EVALUATION_PARTS)
    augmentation = context.built["augmentation"].to(device)
    encoder = context.built["encoder"].to(device)
    if cell.train.channels_last:
        encoder.to(memory_format=torch.channels_last)
    evaluators = {name: build(services.registry, choice) for name, choice in cell.evaluators.items()}
    splits = data.evaluation_splits(device)
    run.epochs, run.steps_per_epoch, run.total_steps = 0, 0, 0
    services.hooks.cmp_run_start(run=run)
    started = time.perf_counter()
    with PeakMemory(device) as memory:
        final = evaluate_representation(
            encoder, augmentation.preprocess, splits, evaluators, progress=progress_reporter(services.hooks, run),
            channels_last=cell.train.channels_last, processes=services.processes, augmentation=augmentation,
        )
    services.hooks.cmp_evaluation_done(run=run, epoch=0, results=final)
    if services.processes.is_main:
        save_embedding_sample(evaluators, run.dir)  # only where `eval.embedding_map` asked for one
    return {
        "metrics": final,
        "metric_info": metric_info(services.registry, cell, final),
        "train": None,
        "eval_history": [{"epoch": 0, **final}],
        "eval_time_s": time.perf_counter() - started,
        "peak_memory_mb": memory.peak_mb,
        "train_images": data.train_count(),
        "test_images": splits.sizes()[1],
        "encoder_input": getattr(encoder, "input_note", None),
    }


def progress_reporter(hooks: Any, run: RunInfo) -> Callable[[str], Progress]:
    """task -> a `Progress` callback telling the `cmp_progress` hook of `run` how far that task is."""

    def for_task(task: str) -> Progress:
        def report(done: int, total: int) -> None:
            hooks.cmp_progress(run=run, task=task, done=done, total=total)

        return report

    return for_task


def fixed_subset(splits: Splits, count: int | None) -> Splits:
    """At most `count` images of each split, the same ones at every evaluation and in every
    cell (a seeded choice), for the cheap evaluations during training."""
    n_train, n_test = splits.sizes()
    if count is None or count >= max(n_train, n_test):
        return splits
    return splits.subset(seeded_rows(n_train, count, EVAL_SUBSET_SEED), seeded_rows(n_test, count, EVAL_SUBSET_SEED + 1))


EVAL_SUBSET_SEED = 2024
"""Seed of the fixed subset evaluated during training (independent of the cell's seed)."""


def metric_info(registry: Registry, cell: Cell, metrics: dict[str, float]) -> dict[str, MetricInfo]:
    """How each metric is shown, from what its evaluator declared at registration."""
    info: dict[str, MetricInfo] = {}
    for name, choice in cell.evaluators.items():
        for metric, described in registry.get("evaluators", choice.name).capabilities.metrics.items():
            info[f"{name}_{metric}"] = described
    for metric in metrics:
        info.setdefault(metric, MetricInfo(metric))
    return info


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    group = optimizer.param_groups[0]
    return float(group.get("initial_lr", group["lr"]))
