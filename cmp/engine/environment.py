"""What a result was measured on: versions, device, threads; and peak memory."""

from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata
from typing import Any

import torch

import cmp


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's; a CUDA device this machine lacks (a Ray driver
    without GPUs describing cells that ran elsewhere) is named as such."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else f"{device} (not on this machine)"
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def environment(device: torch.device, processes: int = 1) -> dict[str, Any]:
    """Versions and hardware, as result.json records them (`processes`: how many trained the run)."""
    return {
        "cmp": cmp.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "faiss": _version("faiss-cpu"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "processes": processes,
    }


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; elsewhere the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
