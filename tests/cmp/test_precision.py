"""`precision: auto`: the rule on faked CPU flags and a faked CUDA query, and what a cell
records — the resolved precision in its key, result and report, so a result trained in
one precision is never reused for a machine whose rule chooses the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import cmp.precision as precision_module
from cmp.api.results import RunResult
from cmp.cli import main
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.precision import BF16_CPU_FLAGS, cpu_flags, fastest_precision, resolve_precision

INTEL_AMX = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AVX512_BF16_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
AMD_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n"
AVX512_WITHOUT_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni amx_tile\n"


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make /proc/cpuinfo, as the rule reads it, say `text` (None: no such file)."""

    def say(text: str | None) -> None:
        path = tmp_path / "cpuinfo"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
        monkeypatch.setattr(precision_module, "CPUINFO", path)

    return say


@pytest.mark.parametrize(("text", "chosen"), [
    (INTEL_AMX, "bf16"), (AVX512_BF16_ONLY, "bf16"), (AMD_AVX2, "fp32"), (ARM, "fp32"), (AVX512_WITHOUT_BF16, "fp32"),
    ("", "fp32"), (None, "fp32"),
])
def test_a_cpu_trains_in_bf16_exactly_when_it_has_amx_or_avx512_bf16(cpuinfo: Any, text: str | None, chosen: str) -> None:
    cpuinfo(text)
    assert fastest_precision(torch.device("cpu")) == chosen
    assert resolve_precision("auto", "cpu") == chosen


def test_the_flags_are_the_first_processors_flags_line(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(INTEL_AMX)
    assert cpu_flags(path) == {"fpu", "vme", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    path.write_text(ARM)
    assert cpu_flags(path) == frozenset()  # an ARM CPU's `Features`: not a rule this module knows
    assert BF16_CPU_FLAGS == {"amx_bf16", "avx512_bf16"}


def test_this_machines_cpu_gets_what_its_own_flags_say() -> None:
    """An independent reading of /proc/cpuinfo (where there is one) against the rule."""
    flags: set[str] = set()
    if Path("/proc/cpuinfo").is_file():
        line = next((row for row in Path("/proc/cpuinfo").read_text().splitlines() if row.startswith("flags")), "flags:")
        flags = set(line.split(":", 1)[1].split())
    expected = "bf16" if {"amx_bf16", "avx512_bf16"} & flags else "fp32"
    assert fastest_precision(torch.device("cpu")) == expected


@pytest.mark.parametrize(("available", "native", "chosen"), [(True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32")])
def test_a_gpu_trains_in_bf16_exactly_when_it_computes_bf16_natively(
    monkeypatch: pytest.MonkeyPatch, available: bool, native: bool, chosen: str
) -> None:
    asked: list[dict[str, Any]] = []

    def is_bf16_supported(**kwargs: Any) -> bool:
        asked.append(kwargs)
        return native

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert fastest_precision(torch.device("cuda")) == chosen
    assert resolve_precision("auto", "cuda:0") == chosen
    if available:  # device auto is the GPU where there is one
        assert resolve_precision("auto", "auto") == chosen
    assert all(kw == {"including_emulation": False} for kw in asked)  # an emulated bf16 is not a fast one


def test_other_devices_and_explicit_precisions() -> None:
    assert fastest_precision(torch.device("mps")) == "fp32"
    assert [resolve_precision(p, "cpu") for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="got 'fp8'"):
        resolve_precision("fp8", "cpu")


RECIPE = """\
name: tiny
data: {dataset: digits, subset: 256, test_subset: 64}
train: {epochs: 1, batch_size: 64, seed: 0, threads: 1, log_every: 2, device: cpu, precision: PRECISION}
defaults:
  encoder: {name: convnet, params: {widths: [8]}}
  projection_head: {name: mlp, params: {hidden_dim: 16, out_dim: 8}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  augmentation: {name: simclr, params: {crop_scale: [0.6, 1.0]}}
methods:
  simclr: {preset: simclr}
eval: {knn: {k: 5}}
baselines: []
"""


def test_auto_is_resolved_into_the_cells_key_and_configuration(tmp_path: Path, plugins: Any, cpuinfo: Any) -> None:
    def cell(precision: str) -> Any:
        path = tmp_path / f"{precision}.yaml"
        path.write_text(RECIPE.replace("PRECISION", precision))
        (only,) = resolve(load_recipe(path), plugins.registry)
        return only

    cpuinfo(INTEL_AMX)
    on_amx = cell("auto")
    assert on_amx.train.precision == "bf16" and on_amx.config()["train"]["precision"] == "bf16"
    assert on_amx.key() == cell("bf16").key()
    cpuinfo(AMD_AVX2)
    on_avx2 = cell("auto")
    assert on_avx2.train.precision == "fp32" and on_avx2.config()["train"]["precision"] == "fp32"
    assert on_avx2.key() == cell("fp32").key() != on_amx.key()


def test_a_cell_resolved_to_fp32_does_not_reuse_the_bf16_result_and_records_what_ran(tmp_path: Path, cpuinfo: Any) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.replace("PRECISION", "auto"))
    args = ["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")]

    def results() -> dict[str, RunResult]:
        found = [RunResult.from_json(p.read_text()) for p in (tmp_path / "runs" / "tiny").glob("*/result.json")]
        return {str(r.config["train"]["precision"]): r for r in found}

    cpuinfo(INTEL_AMX)  # another machine's CPU: bf16 (emulated here, but it runs)
    assert main(args) == 0
    (bf16,) = results().values()
    assert bf16.ok and bf16.config["train"]["precision"] == "bf16"
    cpuinfo(AMD_AVX2)
    assert main(args) == 0
    ran = results()
    assert set(ran) == {"bf16", "fp32"} and ran["bf16"].key == bf16.key  # trained again, not the bf16 result reused
    fp32 = ran["fp32"]
    assert fp32.ok and not fp32.cached and fp32.key != bf16.key
    assert fp32.train is not None and bf16.train is not None and fp32.train.loss_per_epoch != bf16.train.loss_per_epoch
    lines = (tmp_path / "reports" / "tiny" / "report.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if "| precision |" in line)  # the settings table
    columns = [c.strip() for c in lines[header].split("|")]
    assert [c.strip() for c in lines[header + 2].split("|")][columns.index("precision")] == "fp32"
