"""Which device a recipe's `train.device` names on this machine, and whether it is here.

`auto` is CUDA when present, else MPS, else the CPU. Whether a named device is here is a
question for the machine that trains the cell: the local executor asks it before any
work (cells run where the recipe is resolved), and every cell asks it again where it
runs (a Ray task on a GPU node, resolved on a head node that has none), so a missing
device fails that cell alone with one line naming `train.device`.
"""

from __future__ import annotations

import socket

import torch

from cmp.errors import CmpError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else MPS, else the CPU; any other name as it is."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def missing_device(name: str, here: str = "here") -> str | None:
    """Why the device `name` cannot be used on this machine (`here` names it in the
    message), or None when it can."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        return f"'{name}' asked for, but CUDA is not available {here}"
    if name == "mps" and not torch.backends.mps.is_available():
        return f"'mps' asked for, but MPS is not available {here}"
    return None


def require_device(name: str) -> None:
    """`CmpError` at `train.device`, naming this machine, when the device is not here:
    what a cell checks where it runs."""
    problem = missing_device(name, f"on {socket.gethostname()}")
    if problem is not None:
        raise CmpError(problem, where="train.device")
