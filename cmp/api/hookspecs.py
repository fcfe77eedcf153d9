"""Hook specifications: every point where a plugin plugs into cmp.

Registration hooks (one per slot) are called once when the plugins load. Each receives
`register(name, factory, **meta)`; the factory's keyword-only parameters, with their type
hints, are the parameters a recipe may set (see `cmp.api.params`).

Lifecycle hooks are called during a run; every implementation is called (1:N). The
TensorBoard writer and the progress bar are ordinary plugins on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cmp.api.document import Section
    from cmp.api.results import BaselineResult, RunInfo, RunResult

hookspec = pluggy.HookspecMarker("cmp")

Register = Callable[..., Any]


class RegistrationSpecs:
    """One hook per slot of `cmp.api.slots.SLOTS`, named `cmp_register_<slot>`."""

    @hookspec
    def cmp_register_augmentations(self, register: Register) -> None:
        """Register augmentations: factory(data: DataInfo, *, params) -> Augmentation."""

    @hookspec
    def cmp_register_encoders(self, register: Register) -> None:
        """Register encoders: factory(data: DataInfo, *, params) -> Encoder."""

    @hookspec
    def cmp_register_projection_heads(self, register: Register) -> None:
        """Register heads and predictors: factory(in_dim: int, *, params) -> Head."""

    @hookspec
    def cmp_register_targets(self, register: Register) -> None:
        """Register target branches: factory(online: nn.Module, dim: int, *, params) -> TargetBranch.

        `dim` is the size of the embeddings the target returns (the projection head's).
        """

    @hookspec
    def cmp_register_negative_sources(self, register: Register) -> None:
        """Register negative sources: factory(dim: int, *, params) -> NegativeSource."""

    @hookspec
    def cmp_register_losses(self, register: Register) -> None:
        """Register losses: loss(anchors, positives, negatives, *, params) -> scalar.

        Pass `needs_negatives=True` to `register` when the loss needs negatives.
        """

    @hookspec
    def cmp_register_objectives(self, register: Register) -> None:
        """Register objectives: factory(dim: int, *, params) -> StatefulObjective.

        An objective is a loss with parameters or state of its own (SwAV's prototypes,
        DINO's centre); a method chooses one with `objective:` in place of `loss:`.
        """

    @hookspec
    def cmp_register_optimizers(self, register: Register) -> None:
        """Register optimizers: factory(param_groups, batch_size, *, params) -> Optimizer.

        Groups flagged `{"exclude_from_decay": True}` (biases, norm layers) come with
        `weight_decay=0`; optimizers with trust ratios (LARS) skip those groups too.
        """

    @hookspec
    def cmp_register_schedules(self, register: Register) -> None:
        """Register schedules: factory(optimizer, total_steps, steps_per_epoch, *, params).

        The factory returns a torch LR scheduler stepped once per training step.
        """

    @hookspec
    def cmp_register_methods(self, register: Register) -> None:
        """Register method presets: register(name, MethodPreset(...))."""

    @hookspec
    def cmp_register_datasets(self, register: Register) -> None:
        """Register datasets: factory(root, download, split_seed, *, params) -> ImageData.

        `root` is `data.root` (a Path) or None, `download` is False when the recipe forbids
        downloading, `split_seed` fixes the split of a data set without a test split. The
        engine tries local copies first; a data set that cannot be found raises
        `DataError` naming where it looked.
        """

    @hookspec
    def cmp_register_evaluators(self, register: Register) -> None:
        """Register evaluators: factory(*, params) -> Evaluator (train, test -> metrics).

        Pass `during_training=True` to `register` for an evaluator cheap enough to run
        every `train.eval_every` epochs (kNN); the others run once, after training.
        Pass `metrics={"top1": MetricInfo("kNN top-1")}` to say how each metric the
        evaluator returns is labelled and shown; reports, CSV and TensorBoard use it.
        """

    @hookspec
    def cmp_register_baselines(self, register: Register) -> None:
        """Register baselines: factory(*, params) -> Baseline (see `cmp.api.contexts.Baseline`).

        A baseline is a representation every method is compared with under the same
        evaluation protocol (raw pixels, a random encoder, a supervised encoder).
        """


    @hookspec
    def cmp_register_executors(self, register: Register) -> None:
        """Register executors: factory(*, params) -> Executor (see `cmp.api.contexts.Executor`).

        An executor runs a recipe's cells: in this process, in worker processes, on a cluster.
        """


class LifecycleSpecs:
    """Events of a run, in order: start, (step end, epoch end, evaluation done)*, end."""

    @hookspec
    def cmp_run_start(self, run: RunInfo) -> None:
        """A run is about to train."""

    @hookspec
    def cmp_step_end(self, run: RunInfo, step: int, metrics: dict[str, float]) -> None:
        """Every `train.log_every` steps and at the last step: loss, lr and component stats."""

    @hookspec
    def cmp_epoch_end(self, run: RunInfo, epoch: int, metrics: dict[str, float]) -> None:
        """An epoch finished; metrics hold its mean loss and throughput."""

    @hookspec
    def cmp_evaluation_done(self, run: RunInfo, epoch: int, results: dict[str, float]) -> None:
        """Evaluators ran on the encoder after `epoch` epochs; results are their metrics."""

    @hookspec
    def cmp_progress(self, run: RunInfo, task: str, done: int, total: int) -> None:
        """Progress of a long task (training steps, feature extraction) for progress bars."""

    @hookspec
    def cmp_run_end(self, run: RunInfo, result: RunResult) -> None:
        """The run finished (or failed); `result` is what `result.json` holds."""


class ReportSpecs:
    """Hooks of report writing."""

    @hookspec
    def cmp_report_sections(
        self, results: list[RunResult], baselines: list[BaselineResult], out_dir: Path
    ) -> list[Section] | None:
        """Extra report sections, appended after cmp's own (1:N: every plugin's are added).

        Return `cmp.api.Section`s holding Markdown text, `Table`s or `Figure`s
        (PNG files you wrote under `out_dir`); both report.md and report.html show them.
        """
