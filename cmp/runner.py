"""Running cells: build the components, train, evaluate, and write the run directory.

A run directory (`<out>/<recipe>/<method>-<key>/`) holds `config.yaml` (the resolved
configuration), `checkpoint.pt` (atomic), `tensorboard/` and `result.json`. A cell whose
`result.json` exists is not recomputed; a cell with only a checkpoint resumes from it. A
cell that fails is recorded with its reason and the other cells go on.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from cmp.cells import Cell, ResolvedChoice
from cmp.checkpoint import load_checkpoint
from cmp.contracts import DataInfo, ImageData
from cmp.data import load_data
from cmp.environment import environment, peak_memory_mb, reset_peak_memory
from cmp.errors import CmpError, PluginError
from cmp.evaluation import extract_features, pixel_features, run_evaluators
from cmp.learner import PAIRINGS, Learner, OnlineNetwork
from cmp.plugin_loader import Plugins
from cmp.registry import SLOTS, Registry
from cmp.trainer import TrainConfig, Trainer

RESULT = "result.json"
CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"


@dataclass
class RunInfo:
    """What lifecycle hooks learn about the run they are called for."""

    name: str
    recipe: str
    method: str
    key: str
    dir: Path
    config: dict[str, Any]
    device: torch.device
    epochs: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def build(registry: Registry, choice: ResolvedChoice, *context: Any) -> Any:
    """Build a component; a plugin's own exception becomes a `PluginError` naming it."""
    component = registry.get(choice.slot, choice.name)
    try:
        if choice.slot == "losses":
            return functools.partial(component.factory, **choice.params)
        return component.build(*context, **choice.params)
    except CmpError:
        raise
    except Exception as exc:
        raise PluginError(
            f"building {SLOTS[choice.slot].noun} '{choice.name}' failed: {type(exc).__name__}: {exc}",
            where=f"{choice.where} ({component.provider})",
        ) from None


@dataclass
class Model:
    """The components of one cell, built and on the device."""

    augmentation: Any
    learner: Learner
    optimizer: torch.optim.Optimizer
    schedule: Any | None


def build_model(cell: Cell, registry: Registry, info: DataInfo, steps_per_epoch: int, device: torch.device) -> Model:
    """Seed, then build every slot's component for `cell` in a fixed order."""
    torch.manual_seed(cell.train["seed"])
    parts = cell.parts
    encoder = build(registry, parts["encoder"], info)
    head = build(registry, parts["projection_head"], encoder.feature_dim)
    predictor = build(registry, parts["predictor"], head.out_dim) if parts["predictor"] else None
    online = OnlineNetwork(encoder, head)
    target = build(registry, parts["target"], online)
    out_dim = predictor.out_dim if predictor is not None else head.out_dim
    negatives = build(registry, parts["negative_source"], out_dim)
    loss = build(registry, parts["loss"])
    augmentation = build(registry, parts["augmentation"], info).to(device)
    learner = Learner(
        online, predictor, target, negatives, loss, PAIRINGS[cell.step["pairs"]], cell.step["joint_forward"]
    ).to(device)
    if cell.train["channels_last"]:
        learner.to(memory_format=torch.channels_last)
    if cell.train["compile"]:
        learner.online.compile()
    optimizer = build(registry, parts["optimizer"], learner.param_groups(), cell.train["batch_size"])
    total = steps_per_epoch * cell.train["epochs"]
    schedule = build(registry, parts["schedule"], optimizer, total, steps_per_epoch) if parts["schedule"] else None
    return Model(augmentation, learner, optimizer, schedule)


class Runner:
    """Runs cells into `out_dir`, loading each data set once per process."""

    def __init__(self, plugins: Plugins, out_dir: Path, echo: Callable[[str], None] = print) -> None:
        self.plugins = plugins
        self.registry = plugins.registry
        self.hooks = plugins.hook
        self.out_dir = out_dir
        self.echo = echo
        self._data: dict[str, ImageData] = {}

    def data_for(self, cell: Cell) -> ImageData:
        key = json.dumps(cell.data, sort_keys=True)
        if key not in self._data:
            self._data[key] = load_data(cell.data, self.registry)
        return self._data[key]

    def run_dir(self, cell: Cell) -> Path:
        return self.out_dir / cell.recipe / f"{cell.method}-{cell.key()}"

    def cached_result(self, cell: Cell) -> dict[str, Any] | None:
        path = self.run_dir(cell) / RESULT
        if not path.is_file():
            return None
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return result if result.get("key") == cell.key() and result.get("status") == "ok" else None

    def plan(self, cell: Cell) -> str:
        """What `run_cell` would do: reuse a result, resume a checkpoint, retry, or train."""
        if self.cached_result(cell) is not None:
            return "cached"
        run_dir = self.run_dir(cell)
        checkpoint = run_dir / CHECKPOINT
        failed = (run_dir / RESULT).is_file()
        if checkpoint.is_file():
            try:
                state = load_checkpoint(checkpoint, cell.key())
                where = f"resume at step {int(state['position']['step'])}"
            except CmpError as exc:
                where = f"unreadable checkpoint ({exc.message}): train from scratch"
            return f"failed before; {where}" if failed else where
        return "failed before; retry" if failed else "train"

    def run_cell(self, cell: Cell, device_name: str | None = None) -> dict[str, Any]:
        """Train and evaluate one cell (or return its cached result); never raises for a failed run."""
        cached = self.cached_result(cell)
        if cached is not None:
            return {**cached, "cached": True}
        run_dir = self.run_dir(cell)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cell.config(), sort_keys=False))
        device = resolve_device(device_name or cell.train["device"])
        run = RunInfo(cell.name, cell.recipe, cell.method, cell.key(), run_dir, cell.config(), device)
        started = time.perf_counter()
        result: dict[str, Any] = {
            "recipe": cell.recipe, "method": cell.method, "cell": cell.name, "key": cell.key(),
            "sweep": cell.config()["sweep"], "config": cell.config(), "device": str(device),
        }
        try:
            result.update(self._train_and_evaluate(cell, run))
            result["status"] = "ok"
        except CmpError as exc:
            result.update(status="failed", reason=str(exc))
        except Exception as exc:  # a crash inside a component: recorded, the sweep goes on
            (run_dir / "error.txt").write_text(traceback.format_exc())
            result.update(status="failed", reason=f"{type(exc).__name__}: {exc} (traceback in {run_dir / 'error.txt'})")
        result["wall_time_s"] = time.perf_counter() - started
        result["environment"] = environment(device)
        write_json(run_dir / RESULT, result)
        try:
            self.hooks.cmp_run_end(run=run, result=result)
        except Exception as exc:  # a lifecycle plugin must not lose a computed result
            self.echo(f"warning: a plugin failed at run end: {type(exc).__name__}: {exc}")
        return result

    def _train_and_evaluate(self, cell: Cell, run: RunInfo) -> dict[str, Any]:
        if cell.train["threads"]:
            torch.set_num_threads(cell.train["threads"])
        data = self.data_for(cell)
        device = run.device
        train_images = data.train_images
        if data.unlabeled_images is not None:
            train_images = torch.cat([train_images, data.unlabeled_images])
        batch_size = cell.train["batch_size"]
        if batch_size > train_images.shape[0]:
            raise CmpError(
                f"batch size {batch_size} is larger than the {train_images.shape[0]} training images",
                where="train.batch_size",
            )
        info = data.info()
        steps_per_epoch = train_images.shape[0] // batch_size
        model = build_model(cell, self.registry, info, steps_per_epoch, device)
        evaluators = {name: build(self.registry, choice) for name, choice in cell.evaluators.items()}
        during_training = {
            name: e for name, e in evaluators.items()
            if self.registry.get("evaluators", cell.evaluators[name].name).meta.get("during_training", False)
        }
        images = train_images.to(device)
        labelled = (data.train_images.to(device), data.train_labels.to(device), data.test_images.to(device), data.test_labels.to(device))
        generator = torch.Generator(device=device).manual_seed(cell.train["seed"])
        run.epochs, run.steps_per_epoch = cell.train["epochs"], steps_per_epoch
        run.total_steps = steps_per_epoch * cell.train["epochs"]

        def evaluate(epoch: int) -> dict[str, float]:
            chosen = evaluators if epoch >= cell.train["epochs"] else during_training
            results = self.evaluate(run, model.learner.encoder, model.augmentation.preprocess, labelled, info.num_classes, chosen)
            self.hooks.cmp_evaluation_done(run=run, epoch=epoch, results=results)
            return results

        trainer = Trainer(
            model.learner, model.augmentation, images, model.optimizer, model.schedule, generator,
            TrainConfig(
                epochs=cell.train["epochs"], batch_size=batch_size, log_every=cell.train["log_every"],
                eval_every=cell.train["eval_every"], precision=cell.train["precision"],
                channels_last=cell.train["channels_last"],
                checkpoint_seconds=cell.train["checkpoint_minutes"] * 60.0,
                collapse_std=cell.train["collapse_std"],
            ),
            run, self.hooks, evaluate, run.dir / CHECKPOINT,
        )
        checkpoint = run.dir / CHECKPOINT
        resumed_from = None
        if checkpoint.is_file():
            trainer.load_state_dict(load_checkpoint(checkpoint, cell.key()))
            resumed_from = trainer.position.step
            self.echo(f"cmp: {cell.name}: resuming from step {resumed_from} ({checkpoint})")
        reset_peak_memory(device)
        self.hooks.cmp_run_start(run=run)
        summary = trainer.fit({"key": cell.key()})
        final = evaluate(cell.train["epochs"])
        return {
            "metrics": final,
            "train": {
                "epochs": cell.train["epochs"], "steps": summary.steps, "batch_size": batch_size,
                "train_time_s": summary.train_seconds, "images_per_s": summary.images_per_second,
                "loss_per_epoch": summary.loss_per_epoch, "final_loss": summary.loss_per_epoch[-1],
                "resumed_from_step": resumed_from, "effective_lr": _base_lr(model.optimizer),
            },
            "eval_history": summary.eval_history + [{"epoch": cell.train["epochs"], **final}],
            "peak_memory_mb": peak_memory_mb(device),
            "train_images": int(images.shape[0]), "test_images": int(labelled[2].shape[0]),
        }

    def evaluate(
        self, run: RunInfo, encoder: torch.nn.Module, preprocess: Callable[..., Any],
        labelled: tuple[torch.Tensor, ...], num_classes: int, evaluators: dict[str, Any],
    ) -> dict[str, float]:
        """Features of both splits once, then every evaluator on them."""
        train_x, train_y, test_x, test_y = labelled

        def progress(task: str) -> Callable[[int, int], None]:
            return lambda done, total: self.hooks.cmp_progress(run=run, task=task, done=done, total=total)

        layout = {"channels_last": run.config.get("train", {}).get("channels_last", False)}
        train = extract_features(encoder, preprocess, train_x, train_y, num_classes, progress=progress("features/train"), **layout)
        test = extract_features(encoder, preprocess, test_x, test_y, num_classes, progress=progress("features/test"), **layout)
        return run_evaluators(evaluators, train, test)


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    group = optimizer.param_groups[0]
    return float(group.get("initial_lr", group["lr"]))


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
