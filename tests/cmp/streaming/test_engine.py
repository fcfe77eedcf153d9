"""The engine on a streamed data set: the same training and evaluation as in memory, resume, DDP rows.

- A source yielding the crops an in-memory tensor holds (square images, a crop of the
  whole image) trains to the same losses and weights, and streamed evaluation (features,
  diagnostics' views) gives the metrics of the in-memory one.
- A streamed run stopped mid-epoch and resumed from its checkpoint ends with the losses,
  weights and metrics of an uninterrupted run.
- Two gloo processes each read their own rows of every global batch, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from cmp.api.contracts import StreamedData
from cmp.api.loader import Plugins, load_plugins
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.distributed import Processes
from cmp.engine.build import build, build_model
from cmp.engine.checkpoint import load_checkpoint
from cmp.engine.data import Streamed, load_data
from cmp.engine.learner import StepOutput
from cmp.engine.runner import SilentHooks
from cmp.engine.trainer import TrainConfig, Trainer
from cmp.evaluation.features import evaluate_representation
from cmp.evaluation.splits import LabelledSplits, StreamedSplits, view_subset
from cmp.streaming import StreamingSource, build_index, eval_crop
from tests.cmp.streaming.images import picture
from tests.helpers.processes import gloo_process, spawn_within

SIZE, BATCH, EPOCHS, SEED = 16, 8, 2, 5
CPU = torch.device("cpu")

RECIPE = """\
name: engine
data: {{dataset: image_tree, root: {root}, params: {{size: {size}, num_workers: 0, crop_scale: {scale}, crop_ratio: [1.0, 1.0]}}}}
train: {{epochs: {epochs}, batch_size: {batch}, seed: {seed}, threads: 1, log_every: 1}}
defaults:
  encoder: {{name: convnet, params: {{widths: [8, 16]}}}}
  augmentation: {{name: simclr, params: {{crop_scale: [0.5, 1.0]}}}}
  optimizer: {{name: sgd, params: {{lr: 0.1}}}}
  projection_head: {{name: mlp, params: {{hidden_dim: 32, out_dim: 16}}}}
methods:
  simclr: {{preset: simclr}}
eval: {{knn: {{k: 5}}, diagnostics: {{}}}}
baselines: []
"""


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{train,val}/{a,b}: square JPEGs (40-80 px), 12 + 4 per class, one class darker."""
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for k, name in enumerate("ab"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                side = int(rng.integers(40, 81))
                pixels = picture(side, side, rng) // (1 + k)
                Image.fromarray(pixels).save(root / split / name / f"{i:02d}.jpg", quality=90)
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cache"))


def cell_for(tmp_path: Path, root: Path, scale: str = "[1.0, 1.0]") -> tuple[Plugins, Cell, StreamedData]:
    plugins = load_plugins("none")
    recipe = tmp_path / "engine.yaml"
    recipe.write_text(RECIPE.format(root=root, size=SIZE, scale=scale, epochs=EPOCHS, batch=BATCH, seed=SEED))
    (cell,) = resolve(load_recipe(recipe), plugins.registry)
    data = load_data(cell.data, plugins.registry)
    assert isinstance(data, StreamedData)
    return plugins, cell, data


def trainer_for(plugins: Plugins, cell: Cell, data: StreamedData, images: Any, **options: Any) -> Trainer:
    model = build_model(cell, plugins.registry, data.info(), len(data.train) // BATCH, CPU)
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, log_every=1, **options.pop("config", {}))
    return Trainer(model.learner, model.augmentation, images, model.optimizer, model.schedule,
                   torch.Generator().manual_seed(SEED), config, None, options.pop("hooks", SilentHooks()),
                   device=CPU, **options)


def metrics(plugins: Plugins, cell: Cell, trainer: Trainer, splits: Any) -> dict[str, float]:
    evaluators = {name: build(plugins.registry, choice) for name, choice in cell.evaluators.items()}
    return evaluate_representation(trainer.learner.encoder, trainer.augmentation.preprocess, splits,  # type: ignore[attr-defined]
                                   evaluators, augmentation=trainer.augmentation)


def weights(trainer: Trainer) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in trainer.learner.state_dict().items()}


def same_weights(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_source_of_the_same_crops_trains_and_evaluates_as_the_in_memory_tensor(squares: Path, tmp_path: Path) -> None:
    plugins, cell, data = cell_for(tmp_path, squares)
    # a crop of area 1 and aspect 1 of a square image is the whole image: what a tensor data set holds
    whole = torch.stack([eval_crop(data.train.read(i), 3, SIZE, 1.0) for i in range(len(data.train))])
    source = Streamed(data).source(data.train, BATCH, SEED, CPU)
    in_memory, streamed = trainer_for(plugins, cell, data, whole), trainer_for(plugins, cell, data, source)
    assert streamed.source is source and in_memory.source is None
    losses = [t.fit().loss_per_epoch for t in (in_memory, streamed)]
    assert losses[0] == losses[1] and len(losses[0]) == EPOCHS
    assert same_weights(weights(in_memory), weights(streamed))

    splits = Streamed(data).evaluation_splits(CPU)
    assert isinstance(splits, StreamedSplits)
    crops = [torch.stack([eval_crop(s.read(i), 3, SIZE, data.eval_fraction) for i in range(len(s))]) for s in (data.train, data.test)]
    tensors = LabelledSplits(crops[0], torch.from_numpy(data.train.labels), crops[1], torch.from_numpy(data.test.labels), 2)
    assert torch.equal(splits.view_images, crops[1][view_subset(len(data.test))])
    on_tensors, on_stream = metrics(plugins, cell, in_memory, tensors), metrics(plugins, cell, streamed, splits)
    assert on_tensors == on_stream and {"knn_top1", "diagnostics_alignment"} <= set(on_stream)


class Stop(Exception):
    """Training stopped from outside (as a kill would stop it)."""


class StopAt(SilentHooks):
    """Hooks that stop training when step `step` is logged."""

    def __init__(self, step: int) -> None:
        self.step = step

    def cmp_step_end(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            raise Stop


def test_a_streamed_run_resumed_mid_epoch_ends_as_an_uninterrupted_one(squares: Path, tmp_path: Path) -> None:
    plugins, cell, data = cell_for(tmp_path, squares, scale="[0.3, 1.0]")
    every_step = {"checkpoint_seconds": 0.0}

    def trainer(path: Path, **options: Any) -> Trainer:
        return trainer_for(plugins, cell, data, Streamed(data).source(data.train, BATCH, SEED, CPU),
                           config=every_step, checkpoint_path=path, **options)

    straight = trainer(tmp_path / "straight.pt")
    expected = straight.fit()
    assert straight.steps_per_epoch == 3

    stopped = trainer(tmp_path / "stopped.pt", hooks=StopAt(5))
    with pytest.raises(Stop):
        stopped.fit()
    state = load_checkpoint(tmp_path / "stopped.pt")
    assert state["position"]["step"] == 4 and state["position"]["step_in_epoch"] == 1  # in the second epoch
    resumed = trainer(tmp_path / "stopped.pt")
    resumed.load_state_dict(state)
    summary = resumed.fit()
    assert summary.loss_per_epoch == expected.loss_per_epoch and summary.steps == expected.steps
    assert same_weights(weights(resumed), weights(straight))
    splits = Streamed(data).evaluation_splits(CPU)
    assert metrics(plugins, cell, resumed, splits) == metrics(plugins, cell, straight, splits)


class Recorder(nn.Module):
    """An objective that records the ids of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.seen: list[list[int]] = []

    def forward(self, views: list[Tensor], ids: Tensor) -> StepOutput:
        self.seen.append(ids.tolist())
        return StepOutput((self.weight * views[0].mean()) ** 2, None)

    def after_step(self, batch: Any, progress: float) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}


def two_views(images: Tensor, generator: torch.Generator) -> list[Tensor]:
    x = images.float() / 255
    return [x, x]


DDP_EPOCHS, DDP_PERM_SEED = 2, 7


def ddp_worker(rank: int, port: int, root: str, cache: str, out: str) -> None:
    with gloo_process(rank, 2, port):
        index = build_index(Path(root), "train", cache_dir=Path(cache))
        source = StreamingSource(index, batch_size=BATCH, size=8, seed=1, rank=rank, world_size=2, num_workers=0)
        objective = Recorder()
        trainer = Trainer(objective, two_views, source, torch.optim.SGD(objective.parameters(), lr=0.1), None,  # type: ignore[arg-type]
                          torch.Generator().manual_seed(DDP_PERM_SEED), TrainConfig(epochs=DDP_EPOCHS, batch_size=BATCH),
                          None, SilentHooks(), processes=Processes(rank, 2, rank))
        trainer.fit()
        torch.save(objective.seen, Path(out) / f"rank{rank}.pt")


def test_two_processes_each_read_their_own_rows_of_every_batch_once(squares: Path, tmp_path: Path) -> None:
    spawn_within(ddp_worker, (str(squares), str(tmp_path / "cache"), str(tmp_path)), nprocs=2, seconds=120)
    seen = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    generator = torch.Generator().manual_seed(DDP_PERM_SEED)
    steps = 24 // BATCH
    for epoch in range(DDP_EPOCHS):
        perm = torch.randperm(24, generator=generator).tolist()
        for step in range(steps):
            batch = perm[step * BATCH : (step + 1) * BATCH]
            first, second = seen[0][epoch * steps + step], seen[1][epoch * steps + step]
            assert first == batch[: BATCH // 2] and second == batch[BATCH // 2 :]
    for epoch in range(DDP_EPOCHS):
        read = [i for rank in seen for ids in rank[epoch * steps : (epoch + 1) * steps] for i in ids]
        assert sorted(read) == sorted(set(read)) and len(read) == 24
