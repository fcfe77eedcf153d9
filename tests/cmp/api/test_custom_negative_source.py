"""A negative source from a test plugin, with no engine change, beside cmp's nearest-neighbour target.

`tests.helpers.nnclr_plugin` adds nearest-neighbour hard negatives (`nn_support`) kept in
a `cmp.nn.SupportSet`; cmp's own `nearest_neighbour` target (NNCLR's positives) keeps
its support set in the same block. Both are checked against brute-force references,
through a checkpoint, and in a short training run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmp.api.contracts import PairBatch
from cmp.api.loader import Plugins, load_plugins
from cmp.cli import main
from cmp.engine.checkpoint import load_checkpoint, save_checkpoint
from cmp_plugins.losses import nt_xent

MODULE = "tests.helpers.nnclr_plugin"

RECIPE = """\
name: support_sets
data: {dataset: digits}
train: {epochs: 1, batch_size: 64, seed: 0, threads: 1, log_every: 5}
defaults:
  encoder: {name: convnet, params: {widths: [8, 16]}}
  augmentation: {name: simclr, params: {crop_scale: [0.5, 1.0]}}
  optimizer: {name: sgd, params: {lr: 0.1}}
  projection_head: {name: mlp, params: {hidden_dim: 32, out_dim: 16}}
methods:
  nn_negatives:
    preset: simclr
    negative_source: {name: nn_support, params: {size: 300, k: 16}}
  nnclr:
    preset: simclr
    target: {name: nearest_neighbour, params: {size: 300}}
  plain:
    preset: simclr
eval: {knn: {k: 20}}
baselines: []
"""


@pytest.fixture(scope="module")
def loaded() -> Plugins:
    return load_plugins(plugins="none", extra_modules=[MODULE])


def batch_of(anchors: Tensor, keys: Tensor) -> PairBatch:
    return PairBatch(anchors, anchors, torch.arange(anchors.shape[0]), keys, torch.arange(keys.shape[0]))


def keys_batch(positives: dict[int, Tensor]) -> PairBatch:
    """The step's batch as the learner makes it: keys are the positives the target returned."""
    keys = torch.cat(list(positives.values()))
    return batch_of(keys, keys)


def unit(rows: int, dim: int, seed: int) -> Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def by_first_column(rows: Tensor) -> Tensor:
    return rows[rows[:, 0].argsort()]


def test_the_plugin_registers_its_source_and_cmp_its_target_with_typed_parameters(loaded: Plugins) -> None:
    source = loaded.registry.get("negative_sources", "nn_support")
    target = loaded.registry.get("targets", "nearest_neighbour")
    assert source.provider.plugin == MODULE and target.provider.plugin == "targets"
    assert source.schema is not None and source.schema.names() == ["size", "k"]
    assert target.schema is not None and target.schema.names() == ["size"]
    assert target.schema.validate({}) == {"size": 98_304}  # NNCLR's ImageNet support set
    assert source.schema.validate({"size": "12"}) == {"size": 12, "k": 64}


def test_the_support_set_keeps_the_last_keys_first_in_first_out(loaded: Plugins) -> None:
    source = loaded.registry.get("negative_sources", "nn_support").build(4, size=10, k=3)
    stream = unit(26, 4, seed=0)
    for start in range(0, 26, 7):  # batches of 7, 7, 7, 5: the ring wraps twice
        chunk = stream[start : start + 7]
        source.update(batch_of(chunk, chunk))
    torch.testing.assert_close(by_first_column(source.support.values()), by_first_column(stream[-10:]))
    assert int(source.support.memory.pointer) == 26 % 10 and source.support.count == 10
    assert source.stats() == {"negative_support_fill": 1.0}


def test_negatives_are_each_anchors_k_nearest_entries(loaded: Plugins) -> None:
    source = loaded.registry.get("negative_sources", "nn_support").build(8, size=20, k=5)
    anchors, positives = unit(6, 8, seed=1), unit(6, 8, seed=2)
    assert source.negatives(batch_of(anchors, anchors)).bank.shape == (0, 8)
    keys = unit(27, 8, seed=3)
    source.update(batch_of(keys[:4], keys[:4]))
    few = source.negatives(batch_of(anchors, anchors))
    assert few.valid is None and few.bank.shape[0] == 4  # fewer than k stored: all of them
    for start in range(4, 27, 9):
        source.update(batch_of(keys[start : start + 9], keys[start : start + 9]))

    negatives = source.negatives(batch_of(anchors, anchors))
    assert negatives.valid is not None and negatives.valid.shape == (6, 20)
    stored = keys[-20:].tolist()
    temperature = 0.5
    losses = []
    for a in range(6):
        ranked = sorted(stored, key=lambda entry: cosine(anchors[a].tolist(), entry), reverse=True)
        nearest = torch.tensor(ranked[:5])
        chosen = negatives.bank[negatives.valid[a]]
        torch.testing.assert_close(
            by_first_column(chosen), by_first_column(nearest), rtol=1e-5, atol=1e-6
        )
        s_pos = cosine(anchors[a].tolist(), positives[a].tolist()) / temperature
        s_neg = [cosine(anchors[a].tolist(), entry) / temperature for entry in ranked[:5]]
        losses.append(-s_pos + math.log(math.exp(s_pos) + sum(math.exp(s) for s in s_neg)))
    got = nt_xent(anchors, positives, negatives, temperature=temperature)
    assert got.item() == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_nearest_neighbour_positives_match_brute_force(loaded: Plugins) -> None:
    target = loaded.registry.get("targets", "nearest_neighbour").build(nn.Identity(), 6, size=12)
    first = {0: unit(5, 6, seed=4), 1: unit(5, 6, seed=5)}
    stand_ins = target.positives([], [0, 1], first)
    for v in (0, 1):  # empty support set: the embeddings themselves, without gradient
        assert torch.equal(stand_ins[v], first[v]) and not stand_ins[v].requires_grad
    target.update(nn.Identity(), 0.1, keys_batch(stand_ins))
    for step in range(3):
        chosen = target.positives([], [0, 1], {0: unit(5, 6, seed=10 + step), 1: unit(5, 6, seed=20 + step)})
        target.update(nn.Identity(), 0.2, keys_batch(chosen))  # batch.keys: the neighbours it chose
    order = [first[0]]  # stored: the first positive view's online embeddings of each step
    for step in range(3):
        order += [unit(5, 6, seed=10 + step)]
    stored = torch.cat(order)[-12:].tolist()

    online = unit(5, 6, seed=99).requires_grad_(True)
    out = target.positives([], [1], {1: online})
    assert not out[1].requires_grad  # support entries carry no gradient
    for row in range(5):
        best = max(stored, key=lambda entry: cosine(online[row].tolist(), entry))
        torch.testing.assert_close(out[1][row], torch.tensor(best), rtol=1e-5, atol=1e-6)
    assert target.stats() == {"support_fill": 1.0}


def test_support_sets_survive_a_checkpoint_round_trip(loaded: Plugins, tmp_path: Path) -> None:
    registry = loaded.registry
    source = registry.get("negative_sources", "nn_support").build(8, size=10, k=3)
    target = registry.get("targets", "nearest_neighbour").build(nn.Identity(), 8, size=10)
    keys = unit(13, 8, seed=6)
    source.update(batch_of(keys, keys))
    target.update(nn.Identity(), 0.5, keys_batch(target.positives([], [0], {0: keys})))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"source": source.state_dict(), "target": target.state_dict()})
    state = load_checkpoint(path)
    assert set(state["source"]) == {"support.memory.entries", "support.memory.pointer", "support.memory.filled"}

    restored_source = registry.get("negative_sources", "nn_support").build(8, size=10, k=3)
    restored_source.load_state_dict(state["source"])
    restored_target = registry.get("targets", "nearest_neighbour").build(nn.Identity(), 8, size=10)
    assert restored_target.support.memory.entries.shape == (10, 8)  # the factory is told the width
    restored_target.load_state_dict(state["target"])

    anchors = unit(4, 8, seed=7)
    before, after = source.negatives(batch_of(anchors, anchors)), restored_source.negatives(batch_of(anchors, anchors))
    torch.testing.assert_close(after.bank, before.bank)
    assert before.valid is not None and after.valid is not None and torch.equal(after.valid, before.valid)
    torch.testing.assert_close(restored_target.positives([], [0], {0: anchors})[0], target.positives([], [0], {0: anchors})[0])
    more = unit(4, 8, seed=8)
    for s in (source, restored_source):
        s.update(batch_of(more, more))
    torch.testing.assert_close(restored_source.support.values(), source.support.values())
    assert int(restored_source.support.memory.pointer) == int(source.support.memory.pointer) == 4  # 13 > 10 keys: the last 10 kept


def test_a_short_training_run_with_each_mechanism(tmp_path: Path) -> None:
    recipe = tmp_path / "support_sets.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "runs"
    assert main(["-p", MODULE, "run", str(recipe), "--out", str(out), "--reports", str(tmp_path / "reports")]) == 0
    results = {}
    for path in (out / "support_sets").glob("*/result.json"):
        result = json.loads(path.read_text())
        results[result["method"]] = (result, path.parent / "checkpoint.pt")
    assert set(results) == {"nn_negatives", "nnclr", "plain"}
    steps = 1437 // 64  # digits: 1 797 images, 80 % for training
    plain = results["plain"][0]
    assert plain["status"] == "ok", plain.get("reason")
    for method, slot in (("nn_negatives", "negative_source"), ("nnclr", "target")):
        result, checkpoint = results[method]
        assert result["status"] == "ok", result.get("reason")
        assert result["train"]["steps"] == steps
        assert math.isfinite(result["train"]["final_loss"])
        # the same seed, data and network as the plain SimCLR cell: only the plugin's
        # mechanism differs, and CPU runs are deterministic, so any difference is its doing
        assert result["train"]["final_loss"] != plain["train"]["final_loss"]
        learner = load_checkpoint(checkpoint)["learner"]
        assert int(learner[f"{slot}.support.memory.filled"]) == 300
        rows = 2 * 64 if slot == "negative_source" else 64  # both key views, or the target's first view
        assert int(learner[f"{slot}.support.memory.pointer"]) == steps * rows % 300
        assert learner[f"{slot}.support.memory.entries"].shape == (300, 16)
