"""A recipe's sweep expanded into points, and each point split into what it sets where.

A sweep is a grid (or a list of grids) of dotted keys; every combination is a point. Keys
under `data`, `train`, `eval` and `baselines` are written into the recipe, which is
validated again; part and step keys apply to every method, `methods.<name>.` keys to one.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

import pydantic

from cmp.api.params import describe_validation_error
from cmp.api.slots import PARTS, STEP_OPTIONS
from cmp.config.recipe import Recipe, RecipeModel, apply_override, known_keys
from cmp.suggest import unknown_name

ROOT_KEYS = ("data", "train", "eval", "baselines")
"""Sweep keys under these apply to the whole recipe; part keys (loss, encoder...) to every method."""


def sweep_points(recipe: Recipe) -> list[tuple[str, dict[str, Any]]]:
    """(key path of the grid, {dotted key: value}) for every point of the recipe's sweep."""
    sweep = recipe.model.sweep
    if not sweep:
        return [("sweep", {})]
    grids = [("sweep", sweep)] if isinstance(sweep, dict) else [(f"sweep.{i}", g) for i, g in enumerate(sweep)]
    points = []
    for where, grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            points.append((where, dict(zip(keys, values))))
    return points



def check_sweep_keys(recipe: Recipe, point: dict[str, Any], where: str) -> None:
    """Refuse a swept key that names neither a root section, a part, a step option nor `methods`."""
    known = [*ROOT_KEYS, *PARTS, *STEP_OPTIONS, "methods"]
    for key in point:
        head = key.split(".")[0]
        if head not in known:
            raise recipe.source.error(f"{where}.{key}", unknown_name("sweep key", head, known))


def root_values(point: dict[str, Any]) -> dict[str, Any]:
    """The point's keys that apply to the whole recipe (`train.seed`, `data.params.size`...)."""
    return {k: v for k, v in point.items() if k.split(".")[0] in ROOT_KEYS}


def method_values(point: dict[str, Any], root: dict[str, Any], method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """For one method: its own swept keys (shared part keys and its `methods.<name>.` keys,
    that prefix removed) and every key of the point that applies to it (the cell's `sweep`)."""
    own = {k: v for k, v in point.items() if k not in root and not k.startswith("methods.")}
    prefix = f"methods.{method}."
    own.update({k[len(prefix):]: v for k, v in point.items() if k.startswith(prefix)})
    applies = {k: v for k, v in point.items() if k in root or not k.startswith("methods.") or k.startswith(prefix)}
    return own, applies


def with_root_values(recipe: Recipe, root: dict[str, Any], where: str) -> Recipe:
    """The recipe with swept data/train/eval values written in, validated again."""
    if not root:
        return recipe
    raw = copy.deepcopy(recipe.raw)
    for key, value in root.items():
        apply_override(raw, key, value, recipe.source.where(f"{where}.{key}"))
    try:
        model = RecipeModel.model_validate(raw)
    except pydantic.ValidationError as exc:
        loc, message = describe_validation_error(exc, known_keys(exc, RecipeModel))
        # the recipe was valid before: the error lies at or under a swept key (`train.epochs` of a swept `train`)
        raise recipe.source.error(f"{where}.{'.'.join(loc)}", message) from None
    return dataclasses.replace(recipe, model=model)
