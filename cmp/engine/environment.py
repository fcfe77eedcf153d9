"""What a result was measured on: versions, device, threads; and peak memory, the process's or one cell's."""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
from importlib import metadata
from types import TracebackType
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
    """Start CUDA's peak count afresh (nothing to do elsewhere: the process's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; elsewhere the process's peak resident set size so far
    (cumulative over everything the process did: `PeakMemory` measures one cell's)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_mb() -> float | None:
    """The process's resident set size now (/proc/self/statm), None where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """The peak memory of one stretch of work (a cell), not of the process's life so far.

    On CUDA: the peak allocated, CUDA's count reset at the start. Elsewhere a thread samples
    the process's resident set size every `interval` seconds (and at start and stop) and keeps
    the largest: the process's `ru_maxrss` only grows, so a small cell after a large one would
    report the large one's peak. A spike shorter than `interval` can be missed. Where /proc is
    missing, the cumulative `ru_maxrss` is the fallback.
    """

    def __init__(self, device: torch.device, interval: float = 0.01) -> None:
        self.device, self.interval = device, interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        reset_peak_memory(self.device)
        if self.device.type != "cuda" and resident_mb() is not None:
            self._sample()
            self._thread = threading.Thread(target=self._run, name="cmp-peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._sample()
        else:
            self.peak_mb = peak_memory_mb(self.device)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = resident_mb()
        if now is not None:
            self.peak_mb = now if self.peak_mb is None else max(self.peak_mb, now)
