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

from cmp.errors import DataError
from cmp.streaming import (
    CorruptImage,
    CorruptImageWarning,
    CropSpec,
    ImageIndex,
    StreamingSource,
    build_index,
    stream_eval,
    train_crop,
)
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
    assert [(item.row, item.sample) for item, _ in failed] == [(1, 11)] and "PIL: " in failed[0][1]
    assert not out[1].any()  # left for the caller to replace


def test_a_header_that_is_no_image_is_a_corrupt_image() -> None:
    with pytest.raises(CorruptImage, match="unreadable header"):
        image_header(b"not an image at all")
    with pytest.raises(CorruptImage, match="^empty file$"):
        image_header(b"")


def test_a_truncated_jpeg_is_replaced_after_the_device_fails_on_it_as_in_the_workers(tmp_path: Path, cache: Path) -> None:
    from tests.cmp.streaming.images import write_jpegs

    paths = write_jpegs(tmp_path / "split" / "only", 7, seed=4, sizes=(40, 80))
    paths[3].write_bytes(paths[3].read_bytes()[:700])  # a readable header, the pixels cut off
    cut = build_index(tmp_path, "split", cache_dir=cache)
    order = torch.arange(7)
    with pytest.warns(CorruptImageWarning, match="img_003.jpg"):
        in_workers = batches(cut, 0, order, batch_size=7, max_corrupt=0.5)
    with pytest.warns(CorruptImageWarning, match="img_003.jpg"):
        on_device = batches(cut, 0, order, batch_size=7, max_corrupt=0.5, decode_device="cpu")
    assert torch.equal(in_workers[0].images, on_device[0].images)
    assert [j for j, _ in on_device[0].corrupt] == [3] and on_device[0].lost == ()
    assert torch.equal(on_device[0].images[3], train_crop(cut.read(4), 3, SIZE, CropSpec(), 3, 0, 3))  # the next, with row 3's crop


def test_a_jpeg_nothing_decodes_with_no_readable_image_after_it_is_an_error_naming_it(tmp_path: Path, cache: Path) -> None:
    from tests.cmp.streaming.images import write_jpegs

    (path,) = write_jpegs(tmp_path / "split" / "only", 1, seed=4, sizes=(40, 80))
    path.write_bytes(path.read_bytes()[:700])
    for k in range(2):
        (tmp_path / "split" / "only" / f"z{k}.jpg").write_bytes(b"no image")
    bad = build_index(tmp_path, "split", cache_dir=cache)
    with pytest.raises(DataError, match="nor any of") as failed, pytest.warns(CorruptImageWarning):
        batches(bad, 0, torch.arange(3), batch_size=3, max_corrupt=1.0, decode_device="cpu")
    assert failed.value.where is not None and failed.value.where.endswith("img_000.jpg")


@ignore_corrupt
def test_the_cpu_decodes_only_what_the_device_refuses(tree: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for nvJPEG that refuses one image: that one (and only that one) is decoded
    by the CPU decoders, into the crop the workers would have made."""
    import cmp.streaming.device_decode as device_decode

    index = build_index(tree, "train", cache_dir=cache)
    jpegs = [i for i in range(len(index)) if index.name(i).endswith(".jpg") and "broken" not in index.name(i)][:6]
    refused = index.read(jpegs[2])
    real_decode, real_fallback = device_decode._decode_all, device_decode.decode_bytes
    fallbacks: list[int] = []

    def nvjpeg(datas: list[torch.Tensor], channels: int, device: torch.device) -> list[torch.Tensor]:
        if any(d.numpy().tobytes() == refused for d in datas):
            raise RuntimeError("nvjpeg: unsupported")
        return real_decode(datas, channels, device)

    monkeypatch.setattr(device_decode, "_decode_all", nvjpeg)
    monkeypatch.setattr(device_decode, "decode_bytes", lambda data, channels: fallbacks.append(len(data)) or real_fallback(data, channels))
    order = torch.tensor(jpegs + [i for i in range(len(index)) if i not in jpegs])
    (got,) = batches(index, 0, order, batch_size=6, decode_device="cpu", max_corrupt=0.5)[:1]
    (want,) = batches(index, 0, order, batch_size=6, max_corrupt=0.5)[:1]
    assert torch.equal(got.images, want.images) and got.corrupt == () and fallbacks == [len(refused)]

    monkeypatch.setattr(device_decode, "decode_jpeg", None)
    with pytest.raises(RuntimeError, match=r"^this torchvision has no decode_jpeg: decode in the workers \(decode_on: workers\)$"):
        device_decode.decode_pending(got.images, [device_decode.Pending(0, 0, torch.zeros(3, dtype=torch.uint8), (0, 0, 1, 1))],
                                     3, SIZE, torch.device("cpu"))
    with pytest.raises(DataError) as refused_option:
        StreamingSource(index, batch_size=8, size=SIZE, num_workers=0, decode_device="cpu")
    assert refused_option.value.where == "data.params.decode_on" and refused_option.value.message == (
        "this torchvision cannot decode JPEGs on a device (no torchvision.io.decode_jpeg): decode in the workers")


def test_a_grey_data_sets_jpegs_are_decoded_grey_on_the_device_not_again_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cmp.streaming.device_decode as device_decode

    path = tmp_path / "colour.jpg"
    Image.fromarray(picture(60, 40, np.random.default_rng(0))).save(path, "JPEG", quality=90)
    good = path.read_bytes()
    damaged = good[:200] + bytes(200) + good[400:]  # broken entropy-coded data: libjpeg-turbo still decodes it
    fallbacks: list[int] = []
    real = device_decode.decode_bytes
    monkeypatch.setattr(device_decode, "decode_bytes", lambda data, channels: fallbacks.append(channels) or real(data, channels))
    items = [Pending(0, 0, torch.frombuffer(bytearray(good), dtype=torch.uint8), (0, 0, 40, 60)),
             Pending(1, 1, torch.frombuffer(bytearray(damaged), dtype=torch.uint8), (0, 0, 40, 60))]
    out, failed = decode_pending(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), items, 1, 8, torch.device("cpu"))
    assert failed == [] and out.shape == (2, 1, 8, 8) and out.float().mean() > 5
    assert fallbacks == []  # both decoded grey on the device: none left for the CPU to redo


def test_a_jpeg_the_device_refuses_in_a_grey_data_set_is_decoded_grey_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nvJPEG refuses some JPEGs libjpeg-turbo reads (a stand-in refuses them all here): the
    CPU's decode of a colour JPEG in a grey data set is grey, the crop the workers make."""
    import cmp.streaming.device_decode as device_decode
    from cmp.streaming.decode import decode_bytes, resized_crop

    def nvjpeg(datas: list[torch.Tensor], channels: int, device: torch.device) -> list[torch.Tensor]:
        raise RuntimeError("nvjpeg: unsupported")

    monkeypatch.setattr(device_decode, "_decode_all", nvjpeg)
    path = tmp_path / "colour.jpg"
    Image.fromarray(picture(60, 40, np.random.default_rng(1))).save(path, "JPEG", quality=90)
    data = path.read_bytes()
    box = (5, 3, 30, 40)
    out, failed = decode_pending(torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                                 [Pending(1, 0, torch.frombuffer(bytearray(data), dtype=torch.uint8), box)], 1, 8, torch.device("cpu"))
    assert failed == [] and out.shape == (2, 1, 8, 8)
    assert torch.equal(out[1], resized_crop(decode_bytes(data, 1), box, 8)) and not out[0].any()
