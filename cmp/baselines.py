"""Baselines under the same evaluation protocol: raw pixels, a randomly initialised encoder,
and a supervised encoder (same architecture, augmentation, optimizer, epochs and batch
size as the cell, trained with cross-entropy on the labelled training images).

Each is computed once per (data, evaluation, input, encoder, seed) and cached as JSON in
`<out>/baselines/`, so every recipe on the same data reuses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from cmp.cells import Cell
from cmp.errors import CmpError, RunFailed
from cmp.evaluation import pixel_features, run_evaluators
from cmp.learner import param_groups
from cmp.runner import RunInfo, Runner, build, resolve_device, write_json


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline to compute: which, and the cell whose data and protocol it follows."""

    name: str
    cell: Cell

    def label(self) -> str:
        if self.name == "supervised":  # trained at the cell's batch size: one row per size
            return f"supervised ({self.cell.parts['encoder'].name}, batch {self.cell.train['batch_size']})"
        if self.name == "random_init":
            return f"random_init ({self.cell.parts['encoder'].name})"
        return self.name

    def key(self) -> str:
        config = self.cell.config()
        augmentation = config["parts"]["augmentation"]
        # Evaluation input is the augmentation's deterministic preprocess: its size and the
        # data's normalisation, whatever the random parts; only training sees those.
        spec: dict[str, Any] = {
            "baseline": self.name, "data": config["data"], "eval": config["eval"],
            "input": {"size": augmentation.get("params", {}).get("size")},
        }
        if self.name in ("random_init", "supervised"):
            spec["encoder"] = config["parts"]["encoder"]
            spec["seed"] = config["train"]["seed"]
        if self.name == "supervised":
            spec["input"] = augmentation
            spec["optimizer"] = config["parts"]["optimizer"]
            spec["schedule"] = config["parts"]["schedule"]
            spec["train"] = {k: config["train"][k] for k in ("epochs", "batch_size", "precision", "channels_last")}
        blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def baseline_specs(cells: list[Cell]) -> list[BaselineSpec]:
    """The distinct baselines the cells ask for, in order."""
    seen: dict[str, BaselineSpec] = {}
    for cell in cells:
        for name in cell.baselines:
            spec = BaselineSpec(name, cell)
            seen.setdefault(spec.key(), spec)
    return list(seen.values())


def compute_baseline(runner: Runner, spec: BaselineSpec, device_name: str | None = None) -> dict[str, Any]:
    """Evaluate one baseline, or read it from the cache; a failure is recorded, not raised."""
    try:
        return _compute_baseline(runner, spec, device_name)
    except Exception as exc:  # a failed baseline must not lose the cells already computed
        reason = str(exc) if isinstance(exc, CmpError) else f"{type(exc).__name__}: {exc}"
        return {"baseline": spec.name, "label": spec.label(), "key": spec.key(), "status": "failed", "reason": reason, "metrics": {}}


def _compute_baseline(runner: Runner, spec: BaselineSpec, device_name: str | None) -> dict[str, Any]:
    path = runner.out_dir / "baselines" / f"{spec.name}-{spec.key()}.json"
    if path.is_file():
        try:
            return {**json.loads(path.read_text()), "label": spec.label(), "cached": True}
        except (OSError, json.JSONDecodeError):
            pass
    cell = spec.cell
    started = time.perf_counter()
    device = resolve_device(device_name or cell.train["device"])
    data = runner.data_for(cell)
    info = data.info()
    augmentation = build(runner.registry, cell.parts["augmentation"], info).to(device)
    evaluators = {name: build(runner.registry, choice) for name, choice in cell.evaluators.items()}
    n = len(data.classes)
    labelled = (data.train_images.to(device), data.train_labels.to(device), data.test_images.to(device), data.test_labels.to(device))
    if spec.name == "raw_pixels":
        train = pixel_features(augmentation.preprocess, labelled[0], labelled[1], n)
        test = pixel_features(augmentation.preprocess, labelled[2], labelled[3], n)
        metrics = run_evaluators(evaluators, train, test)
    else:
        torch.manual_seed(cell.train["seed"])
        encoder = build(runner.registry, cell.parts["encoder"], info).to(device)
        if spec.name == "supervised":
            train_supervised(runner, cell, encoder, augmentation, labelled[0], labelled[1], n)
        run = RunInfo(spec.label(), cell.recipe, spec.label(), spec.key(), path.parent, {}, device)
        metrics = runner.evaluate(run, encoder, augmentation.preprocess, labelled, n, evaluators)
    result = {
        "baseline": spec.name, "label": spec.label(), "key": spec.key(), "seed": cell.train["seed"],
        "metrics": metrics, "wall_time_s": time.perf_counter() - started, "status": "ok",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


def train_supervised(
    runner: Runner, cell: Cell, encoder: nn.Module, augmentation: Any,
    images: torch.Tensor, labels: torch.Tensor, num_classes: int,
) -> None:
    """Train `encoder` + a linear classifier with cross-entropy on one augmented view.

    Same budget as the cell: its optimizer and schedule, epochs, batch size and precision.
    """
    device = images.device
    classifier = nn.Linear(encoder.feature_dim, num_classes).to(device)
    model = nn.Sequential(encoder, classifier)
    if cell.train["channels_last"]:
        model.to(memory_format=torch.channels_last)
    batch = min(cell.train["batch_size"], images.shape[0])
    steps_per_epoch = images.shape[0] // batch
    optimizer = build(runner.registry, cell.parts["optimizer"], param_groups(model), batch)
    schedule = (
        build(runner.registry, cell.parts["schedule"], optimizer, steps_per_epoch * cell.train["epochs"], steps_per_epoch)
        if cell.parts["schedule"] else None
    )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cell.train["precision"])
    generator = torch.Generator(device=device).manual_seed(cell.train["seed"])
    model.train()
    for epoch in range(cell.train["epochs"]):
        perm = torch.randperm(images.shape[0], generator=generator, device=device)
        for i in range(steps_per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            context = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
            with context:
                view = augmentation(images[idx], generator)[0]
                if cell.train["channels_last"]:
                    view = view.contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(model(view).float(), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
        value = loss.item()
        if not math.isfinite(value):
            raise RunFailed(f"supervised baseline loss became {value} in epoch {epoch + 1}")
