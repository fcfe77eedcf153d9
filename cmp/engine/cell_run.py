"""One cell's work: data, parts, training, evaluation -> the fields of its `RunResult`.

Read top to bottom: take the data set, check the batch fits it, build every part from
the slot table, resume from a checkpoint if there is one, train through the `Trainer`,
evaluate the encoder with every evaluator, and return what was measured.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from cmp.api.results import MetricInfo, RunInfo, TrainStats
from cmp.config.cells import Cell
from cmp.engine.build import build, build_model
from cmp.engine.environment import peak_memory_mb, reset_peak_memory
from cmp.engine.rundir import CHECKPOINT
from cmp.engine.trainer import TrainConfig, Trainer
from cmp.errors import CmpError
from cmp.evaluation.features import LabelledSplits, evaluate_representation

if TYPE_CHECKING:
    from cmp.engine.runner import Runner


def train_and_evaluate(runner: Runner, cell: Cell, run: RunInfo, resume: dict[str, Any] | None) -> dict[str, Any]:
    """Train `cell` (from `resume` when given) and evaluate it; raises on failure.

    `train.threads` holds for this cell only: the process's thread count is restored
    after it, so one cell's setting does not change the next cell's arithmetic.
    """
    threads = torch.get_num_threads()
    if cell.train.threads:
        torch.set_num_threads(cell.train.threads)
    try:
        return _train_and_evaluate(runner, cell, run, resume)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate(runner: Runner, cell: Cell, run: RunInfo, resume: dict[str, Any] | None) -> dict[str, Any]:
    train = cell.train
    data = runner.data_for(cell.data)
    device = run.device
    images = data.train_images if data.unlabeled_images is None else torch.cat([data.train_images, data.unlabeled_images])
    if train.batch_size > images.shape[0]:
        raise CmpError(
            f"batch size {train.batch_size} is larger than the {images.shape[0]} training images",
            where="train.batch_size",
        )
    info = data.info()
    steps_per_epoch = images.shape[0] // train.batch_size
    model = build_model(cell, runner.registry, info, steps_per_epoch, device)
    evaluators = {name: build(runner.registry, choice) for name, choice in cell.evaluators.items()}
    components = {name: runner.registry.get("evaluators", choice.name) for name, choice in cell.evaluators.items()}
    during_training = {name: e for name, e in evaluators.items() if components[name].meta.get("during_training", False)}
    images = images.to(device)
    splits = LabelledSplits(
        data.train_images.to(device), data.train_labels.to(device),
        data.test_images.to(device), data.test_labels.to(device), info.num_classes,
    )
    processes = runner.processes
    generator = torch.Generator(device=device).manual_seed(train.seed)
    augment_generator = None
    if processes.distributed:  # one data order for all processes, its own augmentation stream each
        augment_generator = torch.Generator(device=device).manual_seed(train.seed * 1_000_003 + processes.rank + 1)
    run.epochs, run.steps_per_epoch, run.total_steps = train.epochs, steps_per_epoch, steps_per_epoch * train.epochs
    eval_seconds = 0.0

    def evaluate(epoch: int) -> dict[str, float]:
        nonlocal eval_seconds
        started = time.perf_counter()
        chosen = evaluators if epoch >= train.epochs else during_training
        results = evaluate_representation(
            model.learner.encoder, model.augmentation.preprocess, splits, chosen,
            progress=lambda task: lambda done, total: runner.hooks.cmp_progress(run=run, task=task, done=done, total=total),
            channels_last=train.channels_last, processes=processes,
        )
        runner.hooks.cmp_evaluation_done(run=run, epoch=epoch, results=results)
        eval_seconds += time.perf_counter() - started
        return results

    trainer = Trainer(
        model.learner, model.augmentation, images, model.optimizer, model.schedule, generator,
        TrainConfig(
            epochs=train.epochs, batch_size=train.batch_size, log_every=train.log_every,
            eval_every=train.eval_every, precision=train.precision, channels_last=train.channels_last,
            checkpoint_seconds=train.checkpoint_minutes * 60.0, collapse_std=train.collapse_std,
            micro_batch=train.micro_batch,
        ),
        run, runner.hooks, evaluate, run.dir / CHECKPOINT, processes, augment_generator,
    )
    resumed_from = None
    if resume is not None:
        trainer.load_state_dict(resume)
        resumed_from = trainer.position.step
        runner.echo(f"cmp: {cell.name}: resuming from step {resumed_from} ({run.dir / CHECKPOINT})")
    reset_peak_memory(device)
    runner.hooks.cmp_run_start(run=run)
    summary = trainer.fit({"key": cell.key()})
    final = evaluate(train.epochs)
    return {
        "metrics": final,
        "metric_info": metric_info(runner, cell, final),
        "train": TrainStats(
            epochs=train.epochs, steps=summary.steps, batch_size=train.batch_size,
            train_time_s=summary.train_seconds, images_per_s=summary.images_per_second,
            loss_per_epoch=summary.loss_per_epoch, final_loss=summary.loss_per_epoch[-1],
            resumed_from_step=resumed_from, effective_lr=_base_lr(model.optimizer),
            images_seen=summary.images_seen,
        ),
        "eval_history": summary.eval_history + [{"epoch": train.epochs, **final}],
        "eval_time_s": eval_seconds,
        "peak_memory_mb": peak_memory_mb(device),
        "train_images": int(images.shape[0]),
        "test_images": int(splits.test_images.shape[0]),
    }


def metric_info(runner: Runner, cell: Cell, metrics: dict[str, float]) -> dict[str, MetricInfo]:
    """How each metric is shown, from what its evaluator declared at registration."""
    info: dict[str, MetricInfo] = {}
    for name, choice in cell.evaluators.items():
        declared = runner.registry.get("evaluators", choice.name).meta.get("metrics", {})
        for metric, described in declared.items():
            info[f"{name}_{metric}"] = described if isinstance(described, MetricInfo) else MetricInfo(str(described))
    for metric in metrics:
        info.setdefault(metric, MetricInfo(metric))
    return info


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    group = optimizer.param_groups[0]
    return float(group.get("initial_lr", group["lr"]))
