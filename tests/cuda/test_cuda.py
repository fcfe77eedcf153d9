"""On a CUDA GPU: the precision paths through the Trainer, the fp16 GradScaler, the MoCo
queue and the EMA target on the device, a checkpoint written on the GPU and read on the
CPU, gradient caching replaying dropout drawn on the GPU, and a tiny
`cmp run --device cuda`.

Without CUDA every test here is reported as skipped (not passed): they say nothing then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cmp.api.contracts import DataInfo
from cmp.api.loader import Plugins
from cmp.api.results import RunInfo
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import Model, build_model
from cmp.engine.checkpoint import load_checkpoint, save_checkpoint
from cmp.engine.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")

CUDA = torch.device("cuda")
ROOT = Path(__file__).resolve().parents[2]
INFO = DataInfo("synthetic", 1, 28, 28, 10, (0.5,), (0.29,))
BATCH = 16


def cell_for(tmp_path: Path, plugins: Plugins, method: str, precision: str = "fp32", **parts: Any) -> Cell:
    """A small convnet cell of a method preset, resolved from a recipe as `cmp run` does."""
    raw = {
        "name": "cuda",
        "data": {"dataset": "fashion_mnist"},
        "train": {"epochs": 1, "batch_size": BATCH, "seed": 0, "device": "cuda", "precision": precision,
                  "collapse_std": 0.0},
        "defaults": {"encoder": {"name": "convnet", "params": {"widths": [8, 16]}}},
        "methods": {method: {"preset": method, **parts}},
        "eval": {},
        "baselines": [],
    }
    path = tmp_path / f"{method}-{precision}.yaml"
    path.write_text(yaml.safe_dump(raw))
    (cell,) = resolve(load_recipe(path), plugins.registry)
    return cell


class NoHooks:
    """Lifecycle hooks that do nothing: these tests look at the loop, not the plugins."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: []


def trainer_for(
    cell: Cell, plugins: Plugins, steps: int, device: torch.device, tmp_path: Path
) -> tuple[Model, Trainer]:
    images = torch.randint(0, 256, (BATCH * steps, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(device)
    model = build_model(cell, plugins.registry, INFO, steps, device)
    run = RunInfo("cuda", cell.recipe, cell.method, cell.key(), tmp_path / "run", cell.config(), device)
    config = TrainConfig(epochs=1, batch_size=BATCH, precision=cell.train.precision, collapse_std=0.0)
    generator = torch.Generator(device=device).manual_seed(0)
    trainer = Trainer(model.learner, model.augmentation, images, model.optimizer, model.schedule, generator,
                      config, run, NoHooks())
    return model, trainer


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("method", ["simclr", "moco", "byol"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_every_method_on_the_gpu(
    tmp_path: Path, plugins: Plugins, method: str, precision: str
) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model, trainer = trainer_for(cell_for(tmp_path, plugins, method, precision), plugins, 4, CUDA, tmp_path)
    before = parameters(model.learner.online)
    summary = trainer.fit()
    assert summary.steps == 4 and torch.isfinite(torch.tensor(summary.loss_per_epoch)).all()
    after = list(model.learner.online.parameters())
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in after)  # autocast keeps fp32 weights
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), "no parameter moved"
    assert trainer.scaler.is_enabled() == (precision == "fp16")


def test_the_fp16_scaler_skips_an_overflowing_step_and_backs_off(tmp_path: Path, plugins: Plugins) -> None:
    model, trainer = trainer_for(cell_for(tmp_path, plugins, "simclr", "fp16"), plugins, 1, CUDA, tmp_path)
    trainer.scaler = torch.amp.GradScaler("cuda", init_scale=2.0**40)  # fp16 gradients overflow at this scale
    before = parameters(model.learner.online)
    trainer.fit()
    assert trainer.scaler.get_scale() < 2.0**40
    assert all(torch.equal(a, b) for a, b in zip(model.learner.online.parameters(), before)), "the step was not skipped"
    state = trainer.scaler.state_dict()
    assert state["scale"] == trainer.scaler.get_scale()


def test_the_moco_queue_and_the_ema_target_live_on_the_gpu(tmp_path: Path, plugins: Plugins) -> None:
    cell = cell_for(tmp_path, plugins, "moco", "bf16", negative_source={"name": "queue", "params": {"size": 48}})
    model, trainer = trainer_for(cell, plugins, 2, CUDA, tmp_path)
    trainer.fit()
    learner = model.learner
    queue = learner.negative_source.past_keys
    assert queue.entries.device.type == "cuda" and queue.entries.dtype == torch.float32
    assert queue.count == 2 * BATCH
    keys = queue.values()
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(2 * BATCH, device=CUDA))
    target = learner.target
    assert all(p.device.type == "cuda" and not p.requires_grad for p in target.network.parameters())
    m = target.base
    old = parameters(target.network)
    online = parameters(learner.online)
    target.update(learner.online, 0.5, None)
    for new, t, o in zip(target.network.parameters(), old, online):
        torch.testing.assert_close(new, m * t + (1 - m) * o, atol=1e-6, rtol=1e-5)


def test_a_checkpoint_written_on_the_gpu_is_read_on_the_cpu(tmp_path: Path, plugins: Plugins) -> None:
    cell = cell_for(tmp_path, plugins, "moco", "fp16", negative_source={"name": "queue", "params": {"size": 48}})
    model, trainer = trainer_for(cell, plugins, 2, CUDA, tmp_path)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"key": cell.key(), **trainer.state_dict()})
    state = load_checkpoint(path, cell.key())

    def tensors(value: Any) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            return [t for v in value.values() for t in tensors(v)]
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in tensors(v)]
        return []

    assert {t.device.type for t in tensors(state)} == {"cpu"}
    cpu_model, _ = trainer_for(cell, plugins, 2, torch.device("cpu"), tmp_path)
    cpu_model.learner.load_state_dict(state["learner"])
    cpu_model.optimizer.load_state_dict(state["optimizer"])
    for name, value in model.learner.state_dict().items():
        torch.testing.assert_close(cpu_model.learner.state_dict()[name], value.cpu(), msg=name)
    assert cpu_model.learner.negative_source.past_keys.count == 2 * BATCH
    assert state["scaler"]["scale"] == trainer.scaler.get_scale()


def test_cmp_run_on_cuda(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: tiny_cuda
        data: {dataset: digits}
        train: {epochs: 1, batch_size: 64, seed: 0, precision: bf16, channels_last: true}
        defaults:
          encoder: {name: convnet, params: {widths: [8, 16]}}
          augmentation: {name: simclr, params: {crop_scale: [0.5, 1.0]}}
          optimizer: {name: sgd, params: {lr: 0.1}}
          projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
        methods:
          simclr: {preset: simclr}
          moco: {preset: moco, negative_source: {name: queue, params: {size: 256}}}
        eval: {knn: {k: 20}}
        baselines: [raw_pixels]
        """))
    out = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "cmp", "run", str(recipe), "--device", "cuda", "--out", str(out),
         "--reports", str(tmp_path / "reports")],
        cwd=ROOT, env={**os.environ, "CMP_PROGRESS": "0"}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = [json.loads(p.read_text()) for p in (out / "tiny_cuda").glob("*/result.json")]
    assert len(results) == 2
    for result in results:
        assert result["status"] == "ok", result.get("error")
        assert result["environment"]["device"].startswith("cuda") and result["device"].startswith("cuda")
        assert 0 <= result["metrics"]["knn_top1"] <= 1


def test_jpegs_decoded_on_the_gpu_match_the_workers_crops(tmp_path: Path) -> None:
    """nvJPEG against libjpeg-turbo, float against uint8 resizing: the same boxes, pixels
    within a few levels (the IDCTs and the rounding differ)."""
    from cmp.streaming import StreamingSource, build_index
    from tests.cmp.streaming.images import write_jpegs

    write_jpegs(tmp_path / "split" / "a", 12, seed=0)
    write_jpegs(tmp_path / "split" / "b", 12, seed=1)
    index = build_index(tmp_path, "split", cache_dir=tmp_path / "cache")
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    batches = {}
    for where in (None, CUDA):
        with StreamingSource(index, batch_size=8, size=64, seed=1, num_workers=2, decode_device=where) as source:
            batches[where] = list(source.epoch(0, order))
    for cpu, gpu in zip(batches[None], batches[CUDA]):
        assert gpu.images.device.type == "cuda" and torch.equal(cpu.ids, gpu.ids)
        difference = (cpu.images.float() - gpu.images.cpu().float()).abs()
        assert difference.mean() < 2.0 and difference.max() <= 64


def test_gradient_caching_replays_the_dropout_drawn_on_the_gpu() -> None:
    """As the CPU test of the same name: the second pass must draw the first pass's masks,
    here from the GPU's random state, and leave that state as one pass would."""
    from cmp.engine.grad_cache import cached_step
    from cmp.engine.learner import Embeddings
    from tests.cmp.engine.test_grad_cache import gradients, inputs, learner_for, no_autocast

    views, ids = inputs()
    views, ids = [v.to(CUDA) for v in views], ids.to(CUDA)
    reference = learner_for("simclr", dropout=0.3).to(CUDA)
    torch.manual_seed(7)
    parts = [reference.embed([v[c] for v in views]) for c in (slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32))]
    z = {v: torch.cat([p.z[v] for p in parts]) for v in parts[0].z}
    out = reference.assemble(views, ids, Embeddings(z, z))
    out.loss.backward()
    after_reference = torch.rand(1, device=CUDA)

    cached = learner_for("simclr", dropout=0.3).to(CUDA)
    torch.manual_seed(7)
    got = cached_step(cached, cached, views, ids, 8, no_autocast, lambda loss: loss)
    assert got.loss.item() == pytest.approx(out.loss.item(), abs=1e-5)
    for name, grad in gradients(reference).items():
        torch.testing.assert_close(gradients(cached)[name], grad, atol=1e-4, rtol=0, msg=name)
    assert torch.equal(torch.rand(1, device=CUDA), after_reference)
