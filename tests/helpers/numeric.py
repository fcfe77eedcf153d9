"""Gradients of plain-Python reference formulas by central differences, without autograd.

A loss written as loops over floats has no gradient of its own; comparing a loss's
autograd gradient with these checks the gradient against the formula itself.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

Matrix = list[list[float]]


def central_differences(f: Callable[[list[Matrix]], float], inputs: list[Matrix], h: float = 1e-6) -> list[Matrix]:
    """d f / d inputs[m][i][j] for every entry, as (f(x + h) - f(x - h)) / 2h; f takes the list of matrices."""
    grads: list[Matrix] = []
    for m, matrix in enumerate(inputs):
        grad = [[0.0] * len(row) for row in matrix]
        for i, row in enumerate(matrix):
            for j in range(len(row)):
                up, down = copy.deepcopy(inputs), copy.deepcopy(inputs)
                up[m][i][j] += h
                down[m][i][j] -= h
                grad[i][j] = (f(up) - f(down)) / (2 * h)
        grads.append(grad)
    return grads


def autograd(loss: torch.Tensor, *inputs: torch.Tensor) -> list[Matrix]:
    """d loss / d each input by autograd, as nested lists."""
    return [g.tolist() for g in torch.autograd.grad(loss, inputs)]


def assert_grads_close(got: list[Matrix], want: list[Matrix], tol: float = 1e-6) -> None:
    """Every entry equal within `tol` (relative or absolute: central differences are good to about 1e-9 here)."""
    assert len(got) == len(want)
    for m, (g_m, w_m) in enumerate(zip(got, want)):
        for i, (g_row, w_row) in enumerate(zip(g_m, w_m)):
            for j, (g, w) in enumerate(zip(g_row, w_row)):
                assert math.isclose(g, w, rel_tol=tol, abs_tol=tol), f"input {m} [{i}][{j}]: autograd {g}, formula {w}"
