"""`train.precision: auto`: the precision that trains fastest on a device, by what it supports.

A rule on the device's capabilities, not a timing probe (timings on shared cores are
noise): bf16 where the device computes in bf16 natively, fp32 elsewhere.

- CUDA: bf16 where `torch.cuda.is_bf16_supported(including_emulation=False)` (Ampere and
  later; an older GPU only emulates it). Queried on the current CUDA device.
- CPU: bf16 where the CPU has AMX (`amx_bf16`) or AVX-512 BF16 (`avx512_bf16`), the
  instructions oneDNN's bf16 kernels use; without them bf16 is converted in software and
  trains slower than fp32. The flags are read from /proc/cpuinfo (Linux); fp32 where it
  cannot be read.
- Anything else (MPS), or CUDA where this machine has none: fp32.

fp16 is never chosen: it needs a loss scaler and can overflow where bf16 cannot, so it
stays a recipe's explicit choice. `auto` is resolved on the machine that resolves the
recipe (`cmp.config.cells`), for the device `train.device` names there — under `--executor
ray` that is the driver — and the cell records the resolved value, so its key, result and
report say what ran. `python -m benchmarks.precision` checks the rule on a machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import torch

from cmp.devices import resolve_device

Precision = Literal["fp32", "bf16", "fp16"]
"""A resolved precision: what the trainer's autocast runs in."""

CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""CPU flags (as /proc/cpuinfo spells them) that make bf16 faster than fp32."""


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The first processor's `flags` in `cpuinfo` (default /proc/cpuinfo); empty where
    there is no such file or line (another OS, an ARM CPU's `Features`)."""
    try:
        text = (cpuinfo or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def fastest_precision(device: torch.device) -> Precision:
    """The precision that trains fastest on `device`, by the rule above."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_flags() & BF16_CPU_FLAGS else "fp32"
    return "fp32"


def resolve_precision(precision: str, device: str) -> Precision:
    """`auto` -> the fastest precision on the device `device` names here; any other as it is."""
    if precision == "auto":
        return fastest_precision(resolve_device(device))
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    return cast(Precision, precision)
