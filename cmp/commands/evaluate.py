"""`cmp eval ENCODER --data DATASET`: evaluate one encoder, as built and loaded, with cmp's protocol.

The command writes the recipe it means, an evaluate-only one (`train.epochs: 0`), to
`<runs>/<name>/recipe.yaml` and runs it like `cmp run` (cached cells, baselines, the
report under reports/<name>/), so the same evaluation is one `cmp run` of that file
later, or a method of a larger recipe beside trained ones.

ENCODER is an encoder component, with a model name after a colon for those that take
`arch` (`torchvision:resnet18`, `timm:vit_small_patch16_224`, `convnet`); `--weights`
names the file, `--param KEY=VALUE` sets its other parameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cmp.api.loader import Plugins
from cmp.commands.run import RunRequest, run_command
from cmp.config.recipe import Override, parse_override
from cmp.errors import CmpError
from cmp.weights import SEED_PLACEHOLDER


@dataclass(frozen=True)
class EvalRequest:
    """`cmp eval` as its command line asked for it (`cmp.cli` builds it from the flags)."""

    encoder: str
    data: str
    weights: Path | None = None
    weights_key: str | None = None
    weights_prefix: str | None = None
    params: list[str] = field(default_factory=list)
    """`KEY=VALUE` parameters of the encoder (`image_size=224`), values read as YAML."""
    name: str | None = None
    data_root: str | None = None
    subset: int | None = None
    test_subset: int | None = None
    seeds: tuple[int, ...] = (0,)
    """One cell per seed (a sweep of `train.seed` when there are several)."""
    device: str | None = None
    set_overrides: list[str] = field(default_factory=list)
    out: Path = Path("runs")
    reports: Path | None = None
    argv: list[str] = field(default_factory=list)
    plugin_names: str | None = None
    plugin_modules: list[str] = field(default_factory=list)


def eval_command(plugins: Plugins, request: EvalRequest) -> int:
    """Write the evaluate-only recipe of `request` and run it; `cmp run`'s exit code."""
    method = method_name(request)
    recipe = eval_recipe(request, method)
    name = str(recipe["name"])
    path = request.out / name / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return run_command(plugins, RunRequest(
        recipe=path, flag_overrides=flag_overrides(request, method), set_overrides=list(request.set_overrides),
        out=request.out, jobs=1, nproc=1, dry_run=False, reports=request.reports, argv=request.argv,
        plugin_names=request.plugin_names, plugin_modules=request.plugin_modules,
    ))


def encoder_choice(spec: str) -> tuple[str, dict[str, Any]]:
    """`torchvision:resnet18` -> ("torchvision", {"arch": "resnet18"}); `convnet` -> ("convnet", {})."""
    name, _, arch = spec.partition(":")
    if not name or (spec.count(":") and not arch):
        raise CmpError("an encoder is NAME or NAME:ARCH, e.g. torchvision:resnet18", where=f"cmp eval {spec}")
    return name, ({"arch": arch} if arch else {})


def method_name(request: EvalRequest) -> str:
    """The evaluated encoder's row in the report: the weights file's name, else the encoder's."""
    name, params = encoder_choice(request.encoder)
    base = request.weights.stem.replace(SEED_PLACEHOLDER, "").strip("-_.") if request.weights is not None else ""
    base = base or params.get("arch", name)
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", base) or "encoder"


def eval_recipe(request: EvalRequest, method: str) -> dict[str, Any]:
    """The evaluate-only recipe: the data, `train.epochs: 0`, one method with the encoder."""
    name, params = encoder_choice(request.encoder)
    for text in request.params:
        key, value = parse_override(text, f"--param {text}")
        params[key] = value
    params.update(weights_params(request))
    data: dict[str, Any] = {"dataset": request.data}
    for key, value in (("root", request.data_root), ("subset", request.subset), ("test_subset", request.test_subset)):
        if value is not None:
            data[key] = value
    train: dict[str, Any] = {"epochs": 0, "seed": request.seeds[0], **({"device": request.device} if request.device else {})}
    return {
        "name": request.name or f"eval_{method}",
        "description": f"`cmp eval {request.encoder}` on {request.data}: the encoder as built and loaded, not trained.",
        "data": data,
        "train": train,
        "methods": {method: {"encoder": {"name": name, "params": params}}},
        **({"sweep": [{"train.seed": list(request.seeds)}]} if len(request.seeds) > 1 else {}),
    }


def weights_params(request: EvalRequest) -> dict[str, Any]:
    """The encoder's `weights`, `weights_key` and `weights_prefix` the flags gave."""
    given = {"weights": str(request.weights) if request.weights is not None else None,
             "weights_key": request.weights_key, "weights_prefix": request.weights_prefix}
    return {key: value for key, value in given.items() if value is not None}


def flag_overrides(request: EvalRequest, method: str) -> list[Override]:
    """What the flags set, as overrides named by flag, so a bad value's error names the flag
    (`--weights r18.pth: ...`) rather than the generated recipe."""
    prefix = f"methods.{method}.encoder.params"
    flags: list[Override] = []
    for key, value in weights_params(request).items():
        flags.append((f"{prefix}.{key}={json.dumps(value)}", f"--{key.replace('_', '-')} {value}"))
    for text in request.params:
        flags.append((f"{prefix}.{text}", f"--param {text}"))
    return flags
