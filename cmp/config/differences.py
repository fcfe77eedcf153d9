"""How resolved cells differ: what `cmp run --dry-run` shows before any training.

A cell's method is flattened to `key: (value, the layer that set it)`; the methods'
differences are the keys whose values differ between methods (not within one method's
sweep), plus any parameter a preset set that a later layer kept while naming the same
component again, so a reader sees what each method really runs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from cmp.config.cell import Cell, plain, short


def resolved_values(cell: Cell) -> dict[str, tuple[Any, str | None]]:
    """The cell's method as flat `key: (value, source)`: `optimizer` -> its name,
    `optimizer.lr_scaling` -> a parameter with the layer that set it (None: the
    component's default), `pairs` / `joint_forward` -> the step options."""
    values: dict[str, tuple[Any, str | None]] = {}
    for key, choice in cell.parts.items():
        values[key] = ("none" if choice is None else choice.name, None if choice is None else choice.where)
        for param, value in (choice.params if choice else {}).items():
            values[f"{key}.{param}"] = (plain(value), choice.param_sources.get(param) if choice else None)
    for key, value in dataclasses.asdict(cell.step).items():
        values[key] = (plain(value), None)
    return values


def method_differences(cells: list[Cell]) -> list[dict[str, str]]:
    """Per cell, `key -> value` of what a reader should see before training: the resolved
    values in which the methods differ (not those a sweep varies within a method), and any
    parameter kept from a preset although a later layer named the same component again
    (MoCo's `lr_scaling: linear` under `defaults.optimizer: sgd`), marked `(preset 'moco')`."""
    flat = [resolved_values(cell) for cell in cells]
    keys = list(dict.fromkeys(k for values in flat for k in values))

    def shown(values: dict[str, tuple[Any, str | None]], key: str) -> str:
        return json.dumps(values.get(key, (None, None))[0], sort_keys=True)

    by_method: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        by_method.setdefault(cell.method, []).append(i)
    swept = {k for k in keys if any(len({shown(flat[i], k) for i in idx}) > 1 for idx in by_method.values())}
    differ = {k for k in keys if k not in swept and len({shown(v, k) for v in flat}) > 1}
    rows = []
    for cell, values in zip(cells, flat):
        row = {}
        for key in [k for k in keys if k in values]:
            value, source = values[key]
            kept = source is not None and source.startswith("preset ") and "." in key and not _from_preset(cell, key)
            if key in differ or kept:
                row[key] = short(value) + (f" ({source.split('.', 1)[0]})" if kept and source else "")
        rows.append(row)
    return rows


def _from_preset(cell: Cell, key: str) -> bool:
    """Whether the component of a part key (`optimizer.lr` -> optimizer) was named by the preset itself."""
    choice = cell.parts.get(key.split(".", 1)[0])
    return choice is not None and choice.where.startswith("preset ")
