"""Decoding JPEGs in the main process on a device: the same crops as the workers decode.

On this machine the device is the CPU, where torchvision's batched `decode_jpeg` uses the
same libjpeg-turbo as the workers' `decode_image`, so the batches must be equal to the
bit; tests/cuda compares nvJPEG's within a tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmp.streaming import CorruptImage, CorruptImageWarning, ImageIndex, StreamingSource, build_index, stream_eval
from cmp.streaming.device_decode import Pending, decode_pending, image_header
from tests.cmp.streaming.images import CORRUPT, picture

SIZE = 24
ignore_corrupt = pytest.mark.filterwarnings("ignore::cmp.streaming.CorruptImageWarning")


@pytest.fixture
def index(tree: Path, cache: Path) -> ImageIndex:
    return build_index(tree, "train", cache_dir=cache)


def batches(index: ImageIndex, epoch: int, order: torch.Tensor, **options: object) -> list:
    settings: dict[str, object] = {"batch_size": 8, "size": SIZE, "seed": 3, "num_workers": 0, "max_corrupt": 0.1, **options}
    with StreamingSource(index, **settings) as source:  # type: ignore[arg-type]
        return list(source.epoch(epoch, order))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of JPEGs each call of the main process's device decoding got."""
    import cmp.streaming.loader as loader

    counts: list[int] = []
    decode = loader.decode_pending
    monkeypatch.setattr(loader, "decode_pending", lambda images, pending, *rest: counts.append(len(pending)) or decode(images, pending, *rest))
    return counts


@ignore_corrupt
def test_training_batches_decoded_on_the_device_equal_the_workers_batches(index: ImageIndex, tree: Path, decoded: list[int]) -> None:
    broken = [index.name(i) for i in range(len(index))].index(str(tree / "train" / CORRUPT))
    rest = [i for i in range(len(index)) if i != broken]
    order = torch.tensor(rest[:5] + [broken] + rest[5:])  # the corrupt file in the first batch, a PNG somewhere
    in_workers = batches(index, 2, order, num_workers=2)
    assert decoded == []
    on_device = batches(index, 2, order, num_workers=2, decode_device="cpu")
    assert decoded == [8, 8, 8, 7, 8]  # 5 batches of 8: one row is the PNG, decoded in its worker
    assert len(on_device) == len(in_workers) == 5
    for a, b in zip(in_workers, on_device):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.images, b.images)
        assert b.pending == ()
    assert on_device[0].corrupt and on_device[0].corrupt[0][0] == broken  # named and counted as in the workers


@ignore_corrupt
def test_evaluation_decoded_on_the_device_equals_the_workers(index: ImageIndex, decoded: list[int]) -> None:
    options = dict(size=SIZE, batch_size=16, num_workers=0, max_corrupt=0.1)
    in_workers = list(stream_eval(index, **options))  # type: ignore[arg-type]
    on_device = list(stream_eval(index, decode_device="cpu", **options))  # type: ignore[arg-type]
    assert sum(decoded) == 40 and len(decoded) == 3
    assert torch.equal(torch.cat([b.images for b in in_workers]), torch.cat([b.images for b in on_device]))


def test_workers_leave_only_jpegs_pending_with_the_crop_box_they_would_decode(index: ImageIndex) -> None:
    from cmp.streaming import CropSpec, crop_generator, random_crop_box
    from cmp.streaming.loader import _Decoder

    raw = _Decoder(index, 3, SIZE, CropSpec(), 3, 1.0, defer_jpeg=True)[(1, list(range(len(index))))]
    suffix = {i: Path(index.name(i)).suffix for i in range(len(index))}
    corrupt = {j for j, _ in raw.corrupt}
    pending = {p.row for p in raw.pending}
    assert len(corrupt) == 1 and pending == {i for i, s in suffix.items() if s == ".jpg"}  # the corrupt one's row too
    png = next(i for i, s in suffix.items() if s == ".png")
    assert raw.images[png].any() and not raw.images[sorted(pending)].any()  # decoded in the worker / left to the device
    for p in raw.pending:
        assert p.sample == (p.row + 1 if p.row in corrupt else p.row)  # the next image stands in for a corrupt one
        _, height, width = image_header(index.read(p.sample))
        assert p.box == random_crop_box(height, width, CropSpec(), crop_generator(3, 1, p.row))  # the row's own crop


def test_a_jpeg_the_device_refuses_is_decoded_on_the_cpu_and_one_nothing_reads_is_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "good.jpg"
    Image.fromarray(picture(60, 40, rng)).save(path, "JPEG", quality=90)
    good = path.read_bytes()
    damaged = good[:200] + bytes(200) + good[400:]  # the header intact, the entropy-coded data not
    items = [Pending(0, 10, torch.frombuffer(bytearray(good), dtype=torch.uint8), (0, 0, 40, 60)),
             Pending(1, 11, torch.frombuffer(bytearray(b"\xff\xd8\xff" + bytes(50)), dtype=torch.uint8), (0, 0, 8, 8)),
             Pending(2, 12, torch.frombuffer(bytearray(damaged), dtype=torch.uint8), (0, 0, 40, 60))]
    out, failed = decode_pending(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), items, 3, 8, torch.device("cpu"))
    assert out[0].float().mean() > 5  # decoded
    assert [(item.row, item.sample) for item, _ in failed] == [(1, 11)]
    assert not out[1].any()  # left for the caller to replace


def test_a_header_that_is_no_image_is_a_corrupt_image() -> None:
    with pytest.raises(CorruptImage, match="unreadable header"):
        image_header(b"not an image at all")
    with pytest.raises(CorruptImage, match="^empty file$"):
        image_header(b"")


def test_a_truncated_jpeg_is_replaced_after_the_device_fails_on_it_as_in_the_workers(tmp_path: Path, cache: Path) -> None:
    from tests.cmp.streaming.images import write_jpegs

    paths = write_jpegs(tmp_path / "split" / "only", 6, seed=4, sizes=(40, 80))
    paths[0].write_bytes(paths[0].read_bytes()[:700])  # a readable header, the pixels cut off
    cut = build_index(tmp_path, "split", cache_dir=cache)
    order = torch.arange(6)
    with pytest.warns(CorruptImageWarning, match="img_000.jpg"):
        in_workers = batches(cut, 0, order, batch_size=6, max_corrupt=0.5)
    with pytest.warns(CorruptImageWarning, match="img_000.jpg"):
        on_device = batches(cut, 0, order, batch_size=6, max_corrupt=0.5, decode_device="cpu")
    assert torch.equal(in_workers[0].images, on_device[0].images)
    assert [j for j, _ in on_device[0].corrupt] == [0] and on_device[0].lost == ()
    assert on_device[0].images[0].any()  # the next image stands in, with the first one's crop
