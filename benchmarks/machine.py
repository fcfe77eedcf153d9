"""What a benchmark ran on, printed above its figures."""

from __future__ import annotations

import platform
import sys

import torch

from cmp.engine.environment import cpu_name


def describe_machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, {device}; "
        f"python {sys.version.split()[0]}, torch {torch.__version__}, {platform.platform()}\n"
        f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}"
    )
