"""Training batches by permutation (resume, ranks, epochs), evaluation in order, corrupt images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cmp.errors import DataError
from cmp.streaming import (
    Batch,
    CorruptImage,
    CorruptImageWarning,
    CropSpec,
    ImageIndex,
    StreamingSource,
    Subset,
    build_index,
    estimate_statistics,
    eval_crop,
    stream_eval,
    train_crop,
)
from tests.cmp.streaming.images import CORRUPT

SIZE = 24
ignore_corrupt = pytest.mark.filterwarnings("ignore::cmp.streaming.CorruptImageWarning")


@pytest.fixture
def index(tree: Path, cache: Path) -> ImageIndex:
    return build_index(tree, "train", cache_dir=cache)


def source(index: ImageIndex, **options: object) -> StreamingSource:
    settings: dict[str, object] = {"batch_size": 8, "size": SIZE, "seed": 3, "num_workers": 0, "max_corrupt": 0.1, **options}
    return StreamingSource(index, **settings)  # type: ignore[arg-type]


def perm(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def same(a: list[Batch], b: list[Batch]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.images, y.images) and torch.equal(x.ids, y.ids) and torch.equal(x.labels, y.labels) for x, y in zip(a, b)
    )


@ignore_corrupt
def test_a_resumed_epoch_yields_exactly_the_batches_from_its_step_on(index: ImageIndex) -> None:
    order = perm(len(index))
    with source(index, num_workers=2) as workers:
        full = list(workers.epoch(4, order))
        assert workers.steps_per_epoch == 5 and len(full) == 5
        assert all(b.images.shape == (8, 3, SIZE, SIZE) and b.images.dtype == torch.uint8 for b in full)
        assert torch.equal(torch.cat([b.ids for b in full]), order[:40])
        assert torch.equal(torch.cat([b.labels for b in full]), torch.from_numpy(index.labels)[order[:40]])
        assert same(list(workers.epoch(4, order, start_step=3)), full[3:])  # the same workers, reset
        assert not same(list(workers.epoch(5, order)), full)  # another epoch: other crops
    with source(index) as fresh:  # a new process after a restart, no worker processes
        assert same(list(fresh.epoch(4, order, start_step=2)), full[2:])
        assert list(fresh.epoch(4, order, start_step=5)) == []


@ignore_corrupt
def test_two_ranks_read_each_sample_of_every_global_batch_exactly_once(index: ImageIndex) -> None:
    order = perm(len(index), seed=1)
    whole = list(source(index).epoch(0, order))
    ranks = [list(source(index, rank=r, world_size=2).epoch(0, order)) for r in (0, 1)]
    for step, (global_batch, first, second) in enumerate(zip(whole, *ranks)):
        assert torch.equal(first.ids, order[step * 8 : step * 8 + 4]) and torch.equal(second.ids, order[step * 8 + 4 : step * 8 + 8])
        assert torch.equal(torch.cat([first.images, second.images]), global_batch.images)
    read = torch.cat([b.ids for rank in ranks for b in rank])
    assert len(read) == len(set(read.tolist())) == 40


def test_a_corrupt_image_is_replaced_by_the_next_readable_one_named_and_counted(index: ImageIndex, tree: Path) -> None:
    broken = [index.name(i) for i in range(len(index))].index(str(tree / "train" / CORRUPT))
    order = torch.cat([torch.tensor([broken]), torch.tensor([i for i in range(len(index)) if i != broken])])
    feed = source(index)
    with pytest.warns(CorruptImageWarning, match="broken.jpg.*cannot decode"):
        first = next(feed.epoch(0, order))
    assert list(feed.corrupt) == [broken] and feed.corrupt[broken] == "Unsupported image file; PIL: cannot identify image file"
    assert first.ids[0] == broken and first.labels[0] == index.labels[broken]
    stand_in = train_crop(index.read(broken + 1), 3, SIZE, CropSpec(), 3, 0, broken)
    assert torch.equal(first.images[0], stand_in)

    strict = source(index, max_corrupt=0.01)
    with pytest.raises(DataError, match="1 of 41 images cannot be decoded") as failed, pytest.warns(CorruptImageWarning):
        next(strict.epoch(0, order))
    assert failed.value.where is not None and failed.value.where.endswith(str(CORRUPT))


@ignore_corrupt
def test_with_no_readable_image_after_a_corrupt_one_the_error_names_the_file(tmp_path: Path, cache: Path) -> None:
    for k in range(3):
        (tmp_path / "split" / "only").mkdir(parents=True, exist_ok=True)
        (tmp_path / "split" / "only" / f"bad{k}.jpg").write_bytes(b"not a jpeg")
    bad = build_index(tmp_path, "split", cache_dir=cache)
    with pytest.raises(DataError, match="nor any of") as failed:
        list(StreamingSource(bad, batch_size=3, size=8, num_workers=0, max_corrupt=1.0).epoch(0, torch.arange(3)))
    assert failed.value.where is not None and failed.value.where.endswith("bad0.jpg")


@ignore_corrupt
def test_evaluation_streams_every_sample_in_order_and_shares_split_it(index: ImageIndex) -> None:
    whole = list(stream_eval(index, size=SIZE, batch_size=16, num_workers=2, max_corrupt=0.1))
    assert [len(b.ids) for b in whole] == [16, 16, 9]
    assert torch.equal(torch.cat([b.ids for b in whole]), torch.arange(41))
    assert torch.equal(torch.cat([b.labels for b in whole]), torch.from_numpy(index.labels))
    shares = [list(stream_eval(index, size=SIZE, batch_size=16, rows=rows, num_workers=0, max_corrupt=0.1)) for rows in (slice(0, 21), slice(21, 41))]
    assert torch.equal(torch.cat([b.images for share in shares for b in share]), torch.cat([b.images for b in whole]))


def test_settings_that_cannot_work_are_refused(index: ImageIndex) -> None:
    with pytest.raises(DataError, match="does not divide"):
        source(index, batch_size=9, world_size=2)
    with pytest.raises(DataError, match="make no batch"):
        source(index, batch_size=64)
    with pytest.raises(ValueError, match="permutation of 41"):
        source(index).epoch(0, torch.arange(40))
    with pytest.raises(ValueError, match="start step 6"):
        source(index).epoch(0, perm(41), start_step=6)


def plain_statistics(index: ImageIndex, rows: list[int], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the readable images' evaluation crops, one image at a time in float64."""
    sums, squares, pixels = np.zeros(3), np.zeros(3), 0
    for i in rows:
        try:
            x = eval_crop(index.read(i), 3, SIZE, fraction).double().numpy() / 255.0
        except CorruptImage:
            continue
        sums += x.sum(axis=(1, 2))
        squares += (x * x).sum(axis=(1, 2))
        pixels += SIZE * SIZE
    mean = sums / pixels
    return mean, np.sqrt(squares / pixels - mean * mean)


def test_estimated_statistics_are_those_of_the_readable_evaluation_crops(index: ImageIndex) -> None:
    mean, std = estimate_statistics(index, channels=3, size=SIZE)  # 41 images, fewer than the sample: all
    want_mean, want_std = plain_statistics(index, list(range(len(index))), 0.875)  # the corrupt one left out
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12)
    np.testing.assert_allclose(std, want_std, rtol=1e-12)

    sampled = estimate_statistics(index, channels=3, size=SIZE, fraction=0.5, count=10, seed=4)
    rows = sorted(np.random.default_rng(4).choice(len(index), size=10, replace=False).tolist())
    np.testing.assert_allclose(sampled, plain_statistics(index, rows, 0.5), rtol=1e-12)
    assert estimate_statistics(index, channels=3, size=SIZE, fraction=0.5, count=10, seed=5) != sampled
    everything = estimate_statistics(index, channels=3, size=SIZE, count=len(index))
    np.testing.assert_allclose(everything, (mean, std), rtol=1e-12)


def test_the_statistics_of_one_pixel_are_that_pixel(index: ImageIndex) -> None:
    """One image at size 1: a single pixel, its own mean, no spread (the floor of 1e-12 on the variance)."""
    mean, std = estimate_statistics(Subset(index, [0]), channels=3, size=1)
    pixel = eval_crop(index.read(0), 3, 1, 0.875).double().flatten() / 255.0
    np.testing.assert_allclose(mean, pixel.numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, [1e-6] * 3, rtol=1e-6)


def test_evaluation_defaults_are_the_central_seven_eighths_and_one_corrupt_image_in_a_hundred(index: ImageIndex) -> None:
    first = next(stream_eval(index, size=SIZE, batch_size=4, num_workers=0))
    assert torch.equal(first.images[0], eval_crop(index.read(0), 3, SIZE, 0.875))
    with pytest.raises(DataError, match="1 of 41 images cannot be decoded"), pytest.warns(CorruptImageWarning):
        list(stream_eval(index, size=SIZE, batch_size=16, num_workers=0))  # 1 of 41 is more than 1 %


def test_a_source_refuses_what_cannot_work_with_one_clear_message(index: ImageIndex) -> None:
    for rank, world_size in ((0, 0), (2, 2), (-1, 2)):
        with pytest.raises(ValueError, match=rf"^rank {rank} is not one of {world_size} process\(es\)$"):
            StreamingSource(index, batch_size=8, size=SIZE, rank=rank, world_size=world_size, num_workers=0)
    for batch_size, world_size, message in ((0, 1, "batch size 0 does not divide among 1 process(es)"),
                                            (9, 2, "batch size 9 does not divide among 2 process(es)"),
                                            (42, 1, "41 images make no batch of 42")):
        with pytest.raises(DataError) as refused:
            StreamingSource(index, batch_size=batch_size, size=SIZE, world_size=world_size, num_workers=0)
        assert (refused.value.message, refused.value.where) == (message, "train.batch_size")
    assert StreamingSource(index, batch_size=1, size=SIZE, num_workers=0).steps_per_epoch == 41


@ignore_corrupt
def test_a_sources_defaults_are_seed_zero_and_one_corrupt_image_in_a_hundred(index: ImageIndex, tree: Path) -> None:
    order = perm(len(index), seed=2)
    with StreamingSource(index, batch_size=8, size=SIZE, num_workers=0, max_corrupt=0.1) as default_seed:
        first = next(default_seed.epoch(0, order))
    assert torch.equal(first.images[0], train_crop(index.read(int(order[0])), 3, SIZE, CropSpec(), 0, 0, int(order[0])))
    broken = [index.name(i) for i in range(len(index))].index(str(tree / "train" / CORRUPT))
    with StreamingSource(index, batch_size=8, size=SIZE, num_workers=0) as strict, pytest.raises(DataError, match="1 of 41"):
        list(strict.epoch(0, torch.cat([torch.tensor([broken]), torch.tensor([i for i in range(41) if i != broken])])))


def test_closing_a_source_stops_its_workers_and_it_can_start_again(index: ImageIndex) -> None:
    with StreamingSource(index, batch_size=8, size=SIZE, num_workers=1, max_corrupt=0.1) as source:
        with pytest.warns(CorruptImageWarning):
            first = list(source.epoch(0, perm(41)))
        workers = list(source._loader._iterator._workers)  # type: ignore[union-attr]
        assert workers and all(w.is_alive() for w in workers)  # persistent between epochs
        source.close()
        assert source._loader is None and not any(w.is_alive() for w in workers)
        again = list(source.epoch(0, perm(41)))
        assert all(torch.equal(a.images, b.images) for a, b in zip(first, again, strict=True))
    in_process = StreamingSource(index, batch_size=8, size=SIZE, num_workers=0, max_corrupt=0.1)
    with pytest.warns(CorruptImageWarning):
        list(in_process.epoch(0, perm(41)))
    in_process.close()  # no worker processes to stop
    assert in_process._loader is None
    in_process.close()  # closing again, or a source that never ran, is nothing to do


def test_corrupt_files_are_named_in_the_first_ten_warnings_then_only_counted(tmp_path: Path, cache: Path) -> None:
    from cmp.streaming.loader import REPLACEMENT_TRIES, WARN_FILES, Batch, _Tally

    for k in range(14):
        (tmp_path / "split" / "c").mkdir(parents=True, exist_ok=True)
        (tmp_path / "split" / "c" / f"bad{k:02d}.jpg").write_bytes(b"no image")
    bad = build_index(tmp_path, "split", cache_dir=cache)
    tally = _Tally(bad, max_corrupt=1.0)
    none = torch.zeros(0, dtype=torch.int64)

    def batch(*corrupt: int) -> Batch:
        return Batch(torch.zeros(0, 3, 1, 1, dtype=torch.uint8), none, none, tuple((j, f"reason {j}") for j in corrupt))

    with pytest.warns(CorruptImageWarning) as said:
        tally.check(batch(0, 1))
        tally.check(batch(1, 2, *range(3, 12)))  # 1 again: counted once; later ones still seen
    assert len(tally.corrupt) == 12 and tally.corrupt[2] == "reason 2"
    messages = [str(w.message) for w in said]
    assert len(messages) == WARN_FILES == 10
    assert messages[0] == f"{bad.name(0)}: cannot decode (reason 0); the next readable image stands in for it"
    assert messages[-1].endswith("stands in for it; later ones are only counted") and not messages[-2].endswith("counted")
    with pytest.raises(DataError) as lost:
        tally.check(Batch(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), none, none, (), (13,)))
    assert lost.value.message == f"cannot be decoded, nor any of the {REPLACEMENT_TRIES - 1} samples after it" == (
        "cannot be decoded, nor any of the 7 samples after it")
    assert lost.value.where == bad.name(13)


def test_the_index_cache_makes_its_folders(tree: Path, tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    assert build_index(tree, "train", cache_dir=deep).from_cache is False
    assert build_index(tree, "train", cache_dir=deep).from_cache is True


def test_estimated_statistics_sum_over_every_batch_and_sample_with_seed_zero(index: ImageIndex) -> None:
    from cmp.streaming import Subset

    thrice = Subset(index, list(range(len(index))) * 3)  # 123 images: two batches of the estimate's 64
    rows = [i % len(index) for i in range(123)]
    np.testing.assert_allclose(estimate_statistics(thrice, channels=3, size=SIZE, count=200),
                               plain_statistics(index, rows, 0.875), rtol=1e-12)
    by_default = estimate_statistics(index, channels=3, size=SIZE, count=10)
    seeded = sorted(np.random.default_rng(0).choice(len(index), size=10, replace=False).tolist())
    np.testing.assert_allclose(by_default, plain_statistics(index, seeded, 0.875), rtol=1e-12)


@ignore_corrupt
def test_closing_stops_the_workers_even_while_an_epoch_is_still_held(index: ImageIndex) -> None:
    source = StreamingSource(index, batch_size=8, size=SIZE, num_workers=1, max_corrupt=0.1)
    held = source.epoch(0, perm(41))
    next(held)  # an epoch left half-read, its iterator still referenced
    workers = list(source._loader._iterator._workers)  # type: ignore[union-attr]
    source.close()
    assert not any(w.is_alive() for w in workers)
    del held


@ignore_corrupt
def test_a_source_stops_its_workers_through_the_data_loaders_public_behaviour_only(
    index: ImageIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No private attribute of PyTorch's DataLoader is read from cmp (they change between
    releases): a source ends its workers by closing the pass it handed out and letting go
    of the loader. No worker process is left, whether the epoch was read to its end or not."""
    import multiprocessing
    import sys

    import cmp.streaming.loader as loader_module

    touched: list[str] = []

    class Watched(loader_module.DataLoader):  # type: ignore[misc, name-defined]
        def __getattribute__(self, name: str) -> object:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if name.startswith("_") and not name.startswith("__") and not caller.startswith("torch"):
                touched.append(f"{caller}: {name}")
            return super().__getattribute__(name)

    monkeypatch.setattr(loader_module, "DataLoader", Watched)
    before = set(multiprocessing.active_children())
    for read_to_the_end in (True, False):
        source = StreamingSource(index, batch_size=8, size=SIZE, num_workers=2, max_corrupt=0.1)
        held = source.epoch(0, perm(41))
        batches = list(held) if read_to_the_end else [next(held)]
        assert batches and batches[0].images.shape == (8, 3, SIZE, SIZE)
        workers = set(multiprocessing.active_children()) - before
        assert len(workers) == 2 and all(w.is_alive() for w in workers)  # persistent: alive after the epoch too
        source.close()
        assert not any(w.is_alive() for w in workers)
        assert set(multiprocessing.active_children()) == before
    assert touched == []
