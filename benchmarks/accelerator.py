"""cmp's speed where users train, in one Markdown table: on a GPU, or (smaller) on the CPU.

Rows: training images/s per method preset (SimCLR, MoCo, BYOL) for the convnet on
Fashion-MNIST and for resnet18 at 32x32 RGB (CIFAR stem, synthetic images: data do not
change the speed), in fp32, bf16, fp16 with the GradScaler, bf16 + channels_last and
bf16 + channels_last + torch.compile, each with its peak memory; the engine's step against
`benchmarks.step_overhead`'s bare PyTorch loops; the batched on-device augmentation against
torchvision v2 per sample in DataLoader workers; kNN evaluation with FAISS on the CPU
against a matmul + top-k on the device; one SimCLR epoch against lightly, when installed;
streamed JPEGs (generated, 200-500 px) decoded in DataLoader workers against decoded on
the device (nvJPEG on a GPU), views made on the device either way.
Every figure is measured in this run; what is not measured says `skipped (reason)`.

    python -m benchmarks.accelerator            # one GPU: under 5 minutes
    python -m benchmarks.accelerator --quick    # smoke-test sizes (CI on a CPU: well under a minute)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.augmentation_throughput import STL_LIKE, TorchvisionViews
from benchmarks.common import Data, fashion_mnist_or_synthetic, fit, resolve_cell, synchronize
from benchmarks.lightly_comparison import compare
from benchmarks.machine import describe_machine
from benchmarks.step_overhead import BARE_LOOPS
from cmp.api.contracts import DataInfo
from cmp.api.loader import Plugins, load_plugins
from cmp.api.results import RunInfo, RunResult
from cmp.config.cells import Cell
from cmp.engine.build import build_model, resolve_device
from cmp.engine.environment import peak_memory_mb, reset_peak_memory
from cmp.precision import fastest_precision
from cmp_plugins.augmentations import simclr
from cmp_plugins.evaluators import knn_scores

METHODS = ("simclr", "moco", "byol")
METHOD_NAMES = {"simclr": "SimCLR", "moco": "MoCo", "byol": "BYOL"}
CONVNET = {"name": "convnet", "params": {"widths": [32, 64, 128], "convs_per_stage": 2}}
RESNET18 = {"name": "resnet18"}


@dataclass(frozen=True)
class Mode:
    """A precision / memory-format / compile setting of the training loop."""

    label: str
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False


MODES = (
    Mode("fp32"),
    Mode("bf16", "bf16"),
    Mode("fp16 + GradScaler", "fp16"),
    Mode("bf16 + channels_last", "bf16", channels_last=True),
    Mode("bf16 + channels_last + compile", "bf16", channels_last=True, compile=True),
)


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (per device and `--quick`)."""

    batch: int
    resnet_batch: int
    steps: int
    warmup: int
    overhead_steps: int
    overhead_rounds: int
    aug_images: int
    aug_rgb_images: int
    aug_workers: int
    knn_train: int
    knn_test: int
    knn_dim: int
    lightly_images: int
    lightly_batch: int
    lightly_rounds: int
    stream_images: int
    stream_batch: int
    budget_s: float
    resnet_side: int = 32
    compile_skip: str | None = None
    """Why compile cells are not measured at these sizes (None: they are, within the budget)."""
    fp16_skip: str | None = None
    """Why fp16 is measured on the first row only (None: on every row)."""
    emulated_bf16_skip: str | None = None
    """Why bf16 is measured on the convnet rows only (None: on every row)."""


def choose_sizes(device: torch.device, quick: bool) -> Sizes:
    """A GPU's sizes (under 5 minutes on one), its `--quick` ones, a CPU's, a CPU's `--quick` ones."""
    workers = max(1, min(8, (os.cpu_count() or 2) // 2))
    if device.type == "cuda" and not quick:
        return Sizes(batch=256, resnet_batch=256, steps=20, warmup=5, overhead_steps=30, overhead_rounds=5,
                     aug_images=16384, aug_rgb_images=4096, aug_workers=workers,
                     knn_train=50000, knn_test=10000, knn_dim=512,
                     lightly_images=60000, lightly_batch=256, lightly_rounds=2,
                     stream_images=3000, stream_batch=256, budget_s=280.0)
    if device.type == "cuda":
        return Sizes(batch=128, resnet_batch=128, steps=3, warmup=2, overhead_steps=5, overhead_rounds=2,
                     aug_images=2048, aug_rgb_images=512, aug_workers=workers,
                     knn_train=5000, knn_test=1000, knn_dim=128,
                     lightly_images=2048, lightly_batch=128, lightly_rounds=1,
                     stream_images=512, stream_batch=128, budget_s=120.0)
    if quick:
        return Sizes(batch=16, resnet_batch=8, steps=1, warmup=1, overhead_steps=3, overhead_rounds=2,
                     aug_images=128, aug_rgb_images=32, aug_workers=1,
                     knn_train=2000, knn_test=500, knn_dim=64,
                     lightly_images=256, lightly_batch=64, lightly_rounds=1,
                     stream_images=48, stream_batch=16, budget_s=60.0, resnet_side=16,
                     compile_skip="--quick on a CPU: compiling takes minutes here",
                     fp16_skip="--quick on a CPU: fp16 is emulated here, seconds a step; measured on the first row",
                     emulated_bf16_skip=None if fastest_precision(device) == "bf16" else
                     "--quick on a CPU without bf16 instructions: emulated, seconds a step; measured on the convnet rows")
    return Sizes(batch=128, resnet_batch=16, steps=5, warmup=2, overhead_steps=10, overhead_rounds=3,
                 aug_images=1024, aug_rgb_images=256, aug_workers=workers,
                 knn_train=20000, knn_test=2000, knn_dim=128,
                 lightly_images=5000, lightly_batch=256, lightly_rounds=3,
                 stream_images=1000, stream_batch=128, budget_s=900.0)


@dataclass
class Row:
    """One line of the table: what, at which setting, the value (or why none), and detail."""

    measurement: str
    setting: str
    value: str
    detail: str = ""


@dataclass
class Bench:
    """Everything the measurements share."""

    plugins: Plugins
    device: torch.device
    sizes: Sizes
    out: Path
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def synthetic_rgb(n: int, side: int = 32) -> Data:
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return Data(f"synthetic {side}x{side} RGB", images, DataInfo("synthetic", 3, side, side, 10, (0.5,) * 3, (0.29,) * 3))


@contextlib.contextmanager
def lifecycle(bench: Bench, cell: Cell, name: str) -> Iterator[RunInfo]:
    """The run-start / run-end hooks around a measurement, as around a real run."""
    run = RunInfo(name, cell.recipe, cell.method, cell.key(), bench.out / name, cell.config(), bench.device)
    bench.plugins.hook.cmp_run_start(run=run)
    try:
        yield run
    finally:
        result = RunResult(recipe=cell.recipe, method=cell.method, cell=name, key=cell.key(), status="ok")
        bench.plugins.hook.cmp_run_end(run=run, result=result)


def memory_note(device: torch.device) -> str:
    if device.type == "cuda":
        return f"peak GPU memory {peak_memory_mb(device):,.0f} MiB (max allocated)"
    return f"peak RSS of the process so far {peak_memory_mb(device):,.0f} MiB"


def encoder_name(encoder: dict[str, Any]) -> str:
    return "convnet" if encoder is CONVNET else "resnet18 (CIFAR stem)"


def throughput_setting(data: Data, batch: int, method: str, encoder: dict[str, Any], mode: Mode) -> str:
    return f"{METHOD_NAMES[method]}, {encoder_name(encoder)}, {data.name}, batch {batch}, {mode.label}"


def train_throughput(bench: Bench, data: Data, batch: int, method: str, encoder: dict[str, Any], mode: Mode) -> Row:
    """Images per second of the engine's training loop for one method, encoder and mode."""
    s, device = bench.sizes, bench.device
    setting = throughput_setting(data, batch, method, encoder, mode)
    if mode.compile and s.compile_skip:
        return Row("training images/s", setting, f"skipped ({s.compile_skip})")
    if mode.compile and bench.elapsed() > s.budget_s * 0.6:
        return Row("training images/s", setting, f"skipped (time budget of {s.budget_s:.0f} s nearly spent)")
    if mode.precision == "fp16" and s.fp16_skip and (method, encoder) != (METHODS[0], CONVNET):
        return Row("training images/s", setting, f"skipped ({s.fp16_skip})")
    if mode.precision == "bf16" and s.emulated_bf16_skip and encoder != CONVNET:
        return Row("training images/s", setting, f"skipped ({s.emulated_bf16_skip})")
    cell = resolve_cell(bench.plugins, method, {"encoder": encoder}, {
        "batch_size": batch, "precision": mode.precision, "channels_last": mode.channels_last, "compile": mode.compile,
    })
    images = data.images[: batch * max(s.steps, s.warmup)].to(device)
    model = build_model(cell, bench.plugins.registry, data.info, s.warmup + s.steps, device)
    generator = torch.Generator(device=device).manual_seed(0)
    with lifecycle(bench, cell, f"{method}-{encoder_name(encoder).split()[0]}-{mode.label}".replace(" ", "")) as run:
        started = time.perf_counter()
        fit(model, cell, images[: batch * s.warmup], batch, generator, run, bench.plugins.hook)
        synchronize(device)
        warm = time.perf_counter() - started
        reset_peak_memory(device)
        started = time.perf_counter()
        fit(model, cell, images[: batch * s.steps], batch, generator, run, bench.plugins.hook)
        synchronize(device)
        seconds = time.perf_counter() - started
    detail = f"{s.steps} step(s) timed after {s.warmup} warm-up step(s) ({warm:.1f} s); {memory_note(device)}"
    rate = batch * s.steps / seconds
    return Row("training images/s", setting, f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}", detail)


def engine_overhead(bench: Bench, data: Data, method: str) -> Row:
    """The engine's step time over `benchmarks.step_overhead`'s bare loop: same cell, fp32."""
    s, device, batch = bench.sizes, bench.device, bench.sizes.batch
    setting = f"{METHOD_NAMES[method]}, convnet, {data.name}, batch {batch}, fp32"
    cell = resolve_cell(bench.plugins, method, {"encoder": CONVNET}, {"batch_size": batch})
    steps = s.overhead_steps
    images = data.images[: batch * steps].to(device)
    total = steps * (s.overhead_rounds + 1)
    cmp_model = build_model(cell, bench.plugins.registry, data.info, total, device)
    bare_model = build_model(cell, bench.plugins.registry, data.info, total, device)
    cmp_gen = torch.Generator(device=device).manual_seed(0)
    bare_gen = torch.Generator(device=device).manual_seed(0)
    order = torch.Generator().manual_seed(0)
    bare_step = BARE_LOOPS[method](bare_model, cell, bare_gen, contextlib.nullcontext)

    with lifecycle(bench, cell, f"overhead-{method}") as run:

        def cmp_round() -> float:
            started = time.perf_counter()
            fit(cmp_model, cell, images, batch, cmp_gen, run, bench.plugins.hook)
            synchronize(device)
            return (time.perf_counter() - started) / steps

        def bare_round() -> float:
            perm = torch.randperm(images.shape[0], generator=order).to(device)
            started = time.perf_counter()
            for i in range(steps):
                bare_step(images[perm[i * batch : (i + 1) * batch]])
            synchronize(device)
            return (time.perf_counter() - started) / steps

        try:
            bare_round()
        except RuntimeError as exc:  # a bare loop written for the CPU only
            first = str(exc).splitlines()[0][:120]
            return Row("engine step / bare loop", setting, f"skipped (step_overhead's bare loop fails on {device.type}: {first})")
        cmp_round()
        cmp_times, bare_times = [], []
        for _ in range(s.overhead_rounds):
            cmp_times.append(cmp_round())
            bare_times.append(bare_round())
    cmp_ms, bare_ms = statistics.median(cmp_times) * 1000, statistics.median(bare_times) * 1000
    detail = (f"cmp {cmp_ms:.2f} ms/step, bare {bare_ms:.2f} ms/step; median of {s.overhead_rounds} alternating "
              f"rounds x {steps} steps; goal <= 1.03")
    return Row("engine step / bare loop", setting, f"{cmp_ms / bare_ms:.3f}", detail)


def augmentation_speedup(bench: Bench, data: Data) -> Row:
    """cmp's batched SimCLR views on the device against torchvision v2 per sample in workers."""
    device, workers = bench.device, bench.sizes.aug_workers
    n = data.images.shape[0]
    batch = min(512, n)
    setting = f"SimCLR views, {data.name}, {n} images, batch {batch}"
    ours = simclr(data.info, crop_scale=(0.2, 1.0)).to(device)
    on_device = data.images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def batched() -> float:
        started = time.perf_counter()
        for start in range(0, n - batch + 1, batch):
            ours(on_device[start : start + batch], generator)
        synchronize(device)
        return time.perf_counter() - started

    loader = torch.utils.data.DataLoader(
        TorchvisionViews(data.images, data.info), batch_size=batch, num_workers=workers,
        persistent_workers=True, pin_memory=device.type == "cuda", drop_last=True,
    )

    def per_sample() -> float:
        started = time.perf_counter()
        for v1, v2 in loader:
            v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
        synchronize(device)
        return time.perf_counter() - started

    batched(), per_sample()  # warm-up: kernels, workers started
    ours_s = statistics.median(batched() for _ in range(3))
    theirs_s = per_sample()
    images = (n // batch) * batch
    detail = (f"cmp batched on {device.type} {images / ours_s:,.0f} img/s, torchvision v2 per sample in {workers} "
              f"DataLoader worker(s) {images / theirs_s:,.0f} img/s (two views per image, to the device)")
    return Row("augmentation: batched / per-sample speed", setting, f"{theirs_s / ours_s:.1f}", detail)


def torch_knn_scores(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_classes: int, k: int, temperature: float,
                     block: int = 1024) -> Tensor:
    """The weighted kNN vote of `knn_scores` with a matmul + top-k where the features are."""
    train = F.normalize(train_x.float(), dim=1)
    test = F.normalize(test_x.float(), dim=1)
    k = min(k, train.shape[0])
    scores = torch.zeros(test.shape[0], num_classes, dtype=torch.float64, device=test.device)
    for start in range(0, test.shape[0], block):
        sims, idx = (test[start : start + block] @ train.T).topk(k, dim=1)
        scores[start : start + block].scatter_add_(1, train_y[idx], sims.double().div_(temperature).exp_())
    return scores


def knn_speedup(bench: Bench) -> Row:
    s, device = bench.sizes, bench.device
    k, classes = 200, 10
    g = torch.Generator().manual_seed(0)
    train_x = torch.randn(s.knn_train, s.knn_dim, generator=g).to(device)
    test_x = torch.randn(s.knn_test, s.knn_dim, generator=g).to(device)
    train_y = torch.randint(0, classes, (s.knn_train,), generator=g).to(device)
    setting = f"k {k}, {s.knn_test} test x {s.knn_train} train features of {s.knn_dim}"

    def timed(work: Callable[[], Tensor]) -> tuple[float, Tensor]:
        work()
        synchronize(device)
        started = time.perf_counter()
        out = work()
        synchronize(device)
        return time.perf_counter() - started, out

    faiss_s, faiss_scores = timed(lambda: knn_scores(train_x, train_y, test_x, classes, k, 0.1))
    torch_s, torch_scores = timed(lambda: torch_knn_scores(train_x, train_y, test_x, classes, k, 0.1))
    agree = (faiss_scores.argmax(1) == torch_scores.cpu().argmax(1)).double().mean().item()
    where = "GPU" if device.type == "cuda" else device.type.upper()
    detail = (f"FAISS (CPU, IndexFlatIP) {faiss_s:.3f} s, torch matmul + top-k on the {where} {torch_s:.3f} s; "
              f"same top-1 class for {agree:.1%} of test rows")
    return Row("kNN evaluation: FAISS CPU time / torch time", setting, f"{faiss_s / torch_s:.2f}", detail)


def lightly_row(bench: Bench, data: Data) -> Row:
    s = bench.sizes
    setting = f"one SimCLR epoch, convnet, {data.name}, {s.lightly_images} images, batch {s.lightly_batch}, fp32"
    if importlib.util.find_spec("lightly") is None:
        return Row("lightly epoch time / cmp epoch time", setting,
                   "skipped (lightly is not installed: pip install -e '.[bench]')")
    result = compare(bench.plugins, bench.device, replace(data, images=data.images[: s.lightly_images]),
                     s.lightly_batch, s.lightly_rounds, s.aug_workers, bench.out)
    return Row("lightly epoch time / cmp epoch time", setting, f"{result.ratio:.2f}", result.detail())


def streaming_row(bench: Bench) -> Row:
    from benchmarks.streaming_throughput import cmp_streaming, write_images

    s, device = bench.sizes, bench.device
    root = Path(bench.out) / "jpegs"
    write_images(root, s.stream_images)
    where = "GPU" if device.type == "cuda" else device.type.upper()
    setting = (f"{s.stream_images} JPEGs of 200-500 px, batch {s.stream_batch}, {s.aug_workers} workers, "
               f"two 96 px SimCLR views on the {where}")
    rates = {}
    for on_device in (False, True):
        seconds, images, _ = cmp_streaming(root, s.aug_workers, s.stream_batch, 96, device, decode_on_device=on_device)
        rates[on_device] = images / seconds
    detail = f"decoded in the workers {rates[False]:,.0f} images/s, on the {where} (decode_on: device) {rates[True]:,.0f} images/s"
    return Row("streaming: decoded on the device / in workers", setting, f"{rates[True] / rates[False]:.2f}", detail)


def measured(bench: Bench, what: str, setting: str, work: Callable[[], Row]) -> Row:
    """`work()`'s row, or one saying how it failed (the other rows are still measured);
    either way said on stderr, so a long run shows it is alive."""
    try:
        row = work()
    except Exception as exc:  # one failed measurement must not cost the whole table
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        row = Row(what, setting, f"failed ({type(exc).__name__}: {first})")
        if bench.device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"[{bench.elapsed():6.1f} s] {row.measurement}: {row.setting}: {row.value}", file=sys.stderr, flush=True)
    return row


def run(bench: Bench) -> list[Row]:
    s = bench.sizes
    grey = fashion_mnist_or_synthetic(max(s.batch * max(s.steps, s.warmup, s.overhead_steps), s.aug_images, s.lightly_images))
    rgb = synthetic_rgb(s.resnet_batch * max(s.steps, s.warmup), s.resnet_side)
    rows: list[Row] = []
    compiled: list[tuple[int, int, Callable[[], Row]]] = []  # (method, row, measure)
    for data, batch, encoder in ((grey, s.batch, CONVNET), (rgb, s.resnet_batch, RESNET18)):
        for method in METHODS:
            for mode in MODES:
                def measure(data: Data = data, batch: int = batch, method: str = method,
                            encoder: dict[str, Any] = encoder, mode: Mode = mode) -> Row:
                    return measured(bench, "training images/s", throughput_setting(data, batch, method, encoder, mode),
                                    lambda: train_throughput(bench, data, batch, method, encoder, mode))

                if mode.compile:  # measured last, within what is left of the time budget
                    compiled.append((METHODS.index(method), len(rows), measure))
                    rows.append(Row("", "", ""))
                else:
                    rows.append(measure())
    rows += [measured(bench, "engine step / bare loop", f"{METHOD_NAMES[method]}, convnet",
                      lambda method=method: engine_overhead(bench, grey, method)) for method in METHODS]
    aug_grey = replace(grey, images=grey.images[: s.aug_images])
    aug_rgb = synthetic_rgb(s.aug_rgb_images, side=96)
    aug_rgb = replace(aug_rgb, info=replace(STL_LIKE, name="synthetic"))
    rows += [measured(bench, "augmentation: batched / per-sample speed", f"SimCLR views, {data.name}",
                      lambda data=data: augmentation_speedup(bench, data)) for data in (aug_grey, aug_rgb)]
    rows.append(measured(bench, "kNN evaluation: FAISS CPU time / torch time", "", lambda: knn_speedup(bench)))
    rows.append(measured(bench, "lightly epoch time / cmp epoch time", "one SimCLR epoch",
                         lambda: lightly_row(bench, grey)))
    rows.append(measured(bench, "streaming: decoded on the device / in workers", "", lambda: streaming_row(bench)))
    for _, index, measure in sorted(compiled, key=lambda c: c[:2]):  # SimCLR on both encoders first
        rows[index] = measure()
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| measurement | setting | value | detail |", "|---|---|---:|---|"]
    lines += [f"| {r.measurement} | {r.setting} | {r.value} | {r.detail} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes: seconds, not minutes")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's; 1 with --quick on a CPU, where a shared machine's "
                             "other jobs stall multi-threaded kernels)")
    args = parser.parse_args()
    os.environ.setdefault("CMP_PROGRESS", "0")
    device = resolve_device(args.device)
    if args.threads or (args.quick and device.type == "cpu"):
        torch.set_num_threads(args.threads or 1)
    sizes = choose_sizes(device, args.quick)
    with tempfile.TemporaryDirectory(prefix="cmp-accelerator-") as out:
        bench = Bench(load_plugins(plugins="none"), device, sizes, Path(out))
        rows = run(bench)
    print(describe_machine())
    print(f"device: {device}; {'quick' if args.quick else 'full'} sizes; {bench.elapsed():.0f} s in all; "
          "other jobs on this machine may have been running\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
