"""Baselines under the same evaluation protocol: raw pixels and a randomly initialised encoder.

Each is computed once per (data, evaluation, input, encoder, seed) and cached as JSON in
`<out>/baselines/`, so every recipe on the same data reuses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import torch

from cmp.cells import Cell
from cmp.evaluation import pixel_features, run_evaluators
from cmp.runner import RunInfo, Runner, write_json, build, resolve_device


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline to compute: which, and the cell whose data and protocol it follows."""

    name: str
    cell: Cell

    def label(self) -> str:
        if self.name == "random_init":
            return f"random_init ({self.cell.parts['encoder'].name})"
        return self.name

    def key(self) -> str:
        config = self.cell.config()
        spec: dict[str, Any] = {
            "baseline": self.name, "data": config["data"], "eval": config["eval"],
            "input": config["parts"]["augmentation"],
        }
        if self.name == "random_init":
            spec["encoder"] = config["parts"]["encoder"]
            spec["seed"] = config["train"]["seed"]
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
    """Evaluate one baseline, or read it from the cache."""
    path = runner.out_dir / "baselines" / f"{spec.name}-{spec.key()}.json"
    if path.is_file():
        try:
            return {**json.loads(path.read_text()), "cached": True}
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
        run = RunInfo(spec.label(), cell.recipe, spec.label(), spec.key(), path.parent, {}, device)
        metrics = runner.evaluate(run, encoder, augmentation.preprocess, labelled, n, evaluators)
    result = {
        "baseline": spec.name, "label": spec.label(), "key": spec.key(), "seed": cell.train["seed"],
        "metrics": metrics, "wall_time_s": time.perf_counter() - started, "status": "ok",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result
