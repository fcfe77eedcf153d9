"""Decoding and crops: modes, full-resolution crops, the same crop for the same (seed, epoch, index)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms.v2.functional import rgb_to_grayscale

from cmp.streaming import (
    CorruptImage,
    CropSpec,
    center_box,
    crop_generator,
    decode_bytes,
    eval_crop,
    random_crop_box,
    train_crop,
)
from tests.cmp.streaming.images import halves, picture


def encoded(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    image = Image.fromarray(array)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("WEBP", None), ("BMP", None)])
def test_every_format_and_mode_decodes_to_the_channels_asked_for(fmt: str, mode: str | None) -> None:
    array = picture(40, 30, np.random.default_rng(0))
    data = encoded(array, fmt, mode)
    for channels in (3, 1):
        image = decode_bytes(data, channels)
        assert image.dtype == torch.uint8 and tuple(image.shape) == (channels, 30, 40)
    if fmt in ("PNG", "BMP") and mode != "P":  # lossless: the pixels themselves
        assert torch.equal(decode_bytes(data, 3), torch.from_numpy(array).permute(2, 0, 1))


def test_bytes_that_are_no_image_raise_corrupt_image_with_the_reason() -> None:
    jpeg = encoded(picture(40, 30, np.random.default_rng(0)), "JPEG")
    for data, reason in [(b"", "empty"), (b"\x00garbage" * 50, "cannot identify"), (jpeg[: len(jpeg) // 2], "truncated")]:
        with pytest.raises(CorruptImage, match=reason):
            decode_bytes(data, 3)


def test_crops_come_from_the_full_resolution_image() -> None:
    """Crops of 8-20% of a black | white image: cut from the full-resolution image, a crop
    that holds the edge shows it sharp (grey in a column or two of the output); an image
    resized once to 32 px and cropped there shows it blurred over many columns. Many
    crops lie wholly in one half."""
    data = encoded(halves(400, 400), "PNG")
    spec, size, n = CropSpec(scale=(0.08, 0.2)), 64, 200
    full = torch.stack([train_crop(data, 1, size, spec, 0, 0, i) for i in range(n)])
    small = F.interpolate(decode_bytes(data, 1)[None].float(), size=(32, 32), mode="bilinear", antialias=True)
    once = []
    for i in range(n):
        top, left, h, w = (v * 32 / 400 for v in random_crop_box(400, 400, spec, crop_generator(0, 0, i)))
        part = small[..., int(top) : max(int(top) + 1, round(top + h)), int(left) : max(int(left) + 1, round(left + w))]
        once.append(F.interpolate(part, size=(size, size), mode="bilinear")[0].round().to(torch.uint8))
    resized_first = torch.stack(once)

    def grey(crops: torch.Tensor) -> float:
        return ((crops > 40) & (crops < 215)).float().mean().item()

    pure = ((full <= 40).flatten(1).all(1) | (full >= 215).flatten(1).all(1)).float().mean().item()
    assert grey(full) < 0.4 * grey(resized_first)
    assert pure > 0.25


def test_the_same_seed_epoch_and_index_give_the_same_crop_and_another_epoch_another() -> None:
    data = encoded(picture(300, 220, np.random.default_rng(1)), "JPEG")
    spec = CropSpec()
    first = train_crop(data, 3, 48, spec, seed=7, epoch=2, index=11)
    assert first.shape == (3, 48, 48) and first.dtype == torch.uint8
    assert torch.equal(first, train_crop(data, 3, 48, spec, seed=7, epoch=2, index=11))
    for other in ({"seed": 7, "epoch": 3, "index": 11}, {"seed": 7, "epoch": 2, "index": 12}, {"seed": 8, "epoch": 2, "index": 11}):
        assert not torch.equal(first, train_crop(data, 3, 48, spec, **other))


def test_crop_boxes_lie_in_the_image_with_area_and_ratio_in_range() -> None:
    spec = CropSpec(scale=(0.2, 0.6), ratio=(3 / 4, 4 / 3))
    for i, (height, width) in enumerate([(200, 500), (480, 210), (333, 333)] * 20):
        top, left, h, w = random_crop_box(height, width, spec, crop_generator(0, 0, i))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        assert 0.19 <= h * w / (height * width) <= 0.61 and 0.74 <= w / h <= 1.35
    assert random_crop_box(10, 1000, spec, crop_generator(0, 0, 0)) == (0, 493, 10, 13)  # no draw fits: the central crop


def plain_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                   rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, one try at a time, drawing from `rng` in
    the documented order: ten area fractions, then ten log aspect ratios, then the corner."""
    fractions = [rng.uniform(scale[0], scale[1]) for _ in range(10)]
    logs = [rng.uniform(math.log(ratio[0]), math.log(ratio[1])) for _ in range(10)]
    for fraction, log_ratio in zip(fractions, logs):
        w = round(math.sqrt(height * width * fraction * math.exp(log_ratio)))
        h = round(math.sqrt(height * width * fraction / math.exp(log_ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    if width / height < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), [
    (200, 500, (0.08, 1.0), (3 / 4, 4 / 3)),  # the default, a wide image
    (10, 20, (0.5, 0.5), (4.0, 4.0)),  # every draw as wide as the image: accepted at width == W
    (20, 10, (0.5, 0.5), (0.25, 0.25)),  # every draw as tall as the image
    (3, 3, (0.01, 0.2), (0.5, 2.0)),  # sides rounding to 0 or 1 pixel
    (10, 1000, (0.2, 0.6), (3 / 4, 4 / 3)),  # no draw fits: too wide for the ratio
    (1000, 10, (0.2, 0.6), (3 / 4, 4 / 3)),  # too tall
    (30, 30, (1.5, 2.0), (1.0, 1.0)),  # no draw fits, the ratio in range: the whole image
    (30, 30, (1.5, 2.0), (0.5, 2.0)),  # as above, inside a range wider than the image's ratio
])
def test_crop_boxes_are_torchvisions_algorithm_drawn_from_the_samples_generator(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
) -> None:
    spec = CropSpec(scale=scale, ratio=ratio)
    for i in range(40):
        box = random_crop_box(height, width, spec, crop_generator(3, 1, i))
        assert box == plain_crop_box(height, width, scale, ratio, crop_generator(3, 1, i))
        assert all(type(v) is int for v in box)


def test_evaluation_input_is_the_central_crop_of_a_resized_shorter_side() -> None:
    data = encoded(picture(320, 240, np.random.default_rng(2)), "PNG")
    ours = eval_crop(data, 3, 56, fraction=0.875)
    assert torch.equal(ours, eval_crop(data, 3, 56, fraction=0.875))
    assert center_box(240, 320, 0.875) == (15, 55, 210, 210)
    reference = TF.center_crop(TF.resize(decode_bytes(data, 3), 64, antialias=True), [56, 56])
    assert (ours.float() - reference.float()).abs().mean() < 3


def test_the_central_box_of_a_one_pixel_image_is_that_pixel() -> None:
    assert center_box(1, 1, 0.875) == (0, 0, 1, 1)
    assert center_box(1, 9, 0.5) == (0, 4, 1, 1)  # at least one pixel, however small the fraction


def pil_pixels(data: bytes, mode: str, luma_from_the_decoder: bool = False) -> torch.Tensor:
    """PIL's decoding as (C, H, W) uint8; for a JPEG's grey, libjpeg's own luma (`draft`)."""
    with Image.open(io.BytesIO(data)) as opened:
        if luma_from_the_decoder:
            opened.draft("L", opened.size)
        array = np.asarray(opened.convert(mode))
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.unsqueeze(0)


def test_decoded_pixels_are_the_decoders_own_in_colour_and_in_grey() -> None:
    colour = picture(40, 30, np.random.default_rng(5))
    jpeg, grey_jpeg, webp = encoded(colour, "JPEG"), encoded(colour, "JPEG", "L"), encoded(colour, "WEBP")
    assert torch.equal(decode_bytes(jpeg, 3), pil_pixels(jpeg, "RGB"))
    assert torch.equal(decode_bytes(jpeg, 1), pil_pixels(jpeg, "L", luma_from_the_decoder=True))  # libjpeg's Y
    assert torch.equal(decode_bytes(grey_jpeg, 1), pil_pixels(grey_jpeg, "L"))
    # torchvision reads WebP in colour only: grey is then torchvision's own luma of the colour image
    assert torch.equal(decode_bytes(webp, 1), rgb_to_grayscale(decode_bytes(webp, 3)))


def test_without_torchvisions_decoders_pil_decodes_every_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import cmp.streaming.decode as decode

    monkeypatch.setattr(decode, "decode_image", None)
    colour = picture(40, 30, np.random.default_rng(6))
    for data in (encoded(colour, "JPEG"), encoded(colour, "PNG", "P"), encoded(colour, "PNG", "RGBA")):
        assert torch.equal(decode_bytes(data, 3), pil_pixels(data, "RGB"))
        assert torch.equal(decode_bytes(data, 1), pil_pixels(data, "L"))  # PIL's own grey, not torchvision's
    with pytest.raises(CorruptImage, match="^cannot identify image file$"):
        decode_bytes(b"\x00garbage" * 50, 3)


def test_a_corrupt_images_reason_is_each_decoders_first_sentence_without_source_locations() -> None:
    with pytest.raises(CorruptImage) as both:
        decode_bytes(b"not an image at all", 3)
    assert str(both.value) == "Unsupported image file; PIL: cannot identify image file"
    with pytest.raises(CorruptImage, match="^empty file$"):
        decode_bytes(b"", 1)


def test_crops_are_torchvisions_antialiased_resize_and_the_float_path_is_within_a_level() -> None:
    from cmp.streaming.decode import resize_through_float, resized_crop

    image = decode_bytes(encoded(picture(300, 220, np.random.default_rng(3)), "PNG"), 3)
    image[:, :40, :60] = 0  # a black corner: stays black, not lifted by clamping
    for box, size in (((0, 0, 120, 150), 48), ((10, 20, 200, 260), 64), ((5, 5, 30, 30), 64)):
        ours = resized_crop(image, box, size)
        want = TF.resized_crop(image, *box, [size, size], antialias=True)
        assert ours.dtype == torch.uint8 and torch.equal(ours, want)
        through_float = resize_through_float(image[None, :, box[0]: box[0] + box[2], box[1]: box[1] + box[3]], size)[0]
        assert through_float.dtype == torch.uint8
        assert (through_float.int() - want.int()).abs().max() <= 1
    corner = resize_through_float(image[None, :, :40, :60], 16)[0]
    assert not corner.any()


def test_a_16_bit_png_keeps_its_high_byte() -> None:
    levels = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 53 % 65536).astype(np.uint16)
    image = Image.new("I;16", (40, 30))
    image.frombytes(levels.astype("<u2").tobytes())
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    high = torch.from_numpy((levels >> 8).astype(np.uint8))
    grey, colour = decode_bytes(buffer.getvalue(), 1), decode_bytes(buffer.getvalue(), 3)
    assert grey.dtype == colour.dtype == torch.uint8  # the bytes every other image gives
    assert torch.equal(grey, high[None]) and torch.equal(colour, high[None].expand(3, -1, -1))
