"""JPEG decoding where the model runs: one batched `torchvision.io.decode_jpeg` call on the device.

With `decode_on: device` the worker processes no longer decode JPEGs: each reads an
image's bytes and header (format and size, PIL's lazy open), chooses its crop box from
the size (the same seeded box `train_crop` / `eval_crop` take, so the crops are the
ones the workers would have decoded) and hands over the bytes (`Pending`). The main
process then decodes every pending JPEG of the batch in one call (nvJPEG on a GPU), and
crops and resizes each one on the device. Other formats (PNG, WebP, BMP) are still
decoded in the workers. A JPEG the device refuses (a damaged body past a good header,
a CMYK image on some nvJPEG versions) is decoded on the CPU instead; one that nothing
reads is reported back so the caller can put the next readable sample in its place.

What it costs: the crop and resize run per image (the images differ in size), one
small kernel launch each on a GPU, in the main process.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from cmp.streaming.decode import Box, CorruptImage, decode_bytes, resized_crop

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # torchvision without its decoders (TorchCodec era): the workers decode everything
    decode_jpeg = None


class Pending(NamedTuple):
    """A JPEG left encoded by a worker: its batch row, the sample read (a stand-in for a
    corrupt one keeps the row's id), the bytes as a uint8 tensor and its crop box."""

    row: int
    sample: int
    data: Tensor
    box: Box


def device_decoding_available() -> bool:
    """Whether this torchvision can decode JPEGs on a device (`torchvision.io.decode_jpeg`)."""
    return decode_jpeg is not None


def image_header(data: bytes | bytearray) -> tuple[str, int, int]:
    """(format, height, width) from an encoded image's header, without decoding its pixels.

    Raises `CorruptImage` when the header is not one of an image PIL knows.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise CorruptImage("empty file")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            return str(opened.format), height, width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"unreadable header ({exc.__class__.__name__})") from None


def _decode_all(datas: list[Tensor], channels: int, device: torch.device) -> list[Tensor]:
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # said on every call since torchvision 0.29
        return list(decode_jpeg(datas, mode=mode, device=device))


def decode_pending(
    images: Tensor, pending: Sequence[Pending], channels: int, size: int, device: torch.device,
) -> tuple[Tensor, list[tuple[Pending, str]]]:
    """A batch's rows completed on `device`: `images` (b, C, S, S) uint8 with the pending
    JPEGs decoded, cropped to their boxes and resized to `size`.

    Returns the batch on the device and the pending images that neither the device nor
    the CPU could decode, with the reason (their rows are left as they were).
    """
    out = images.to(device, non_blocking=True)
    if not pending:
        return out, []
    if decode_jpeg is None:
        raise RuntimeError("this torchvision has no decode_jpeg: decode in the workers (decode_on: workers)")
    datas = [p.data for p in pending]
    try:
        decoded: list[Tensor | None] = list(_decode_all(datas, channels, device))
    except RuntimeError:  # one bad JPEG fails the whole call: find it one by one
        decoded = []
        for data in datas:
            try:
                decoded.append(_decode_all([data], channels, device)[0])
            except RuntimeError:
                decoded.append(None)
    failed: list[tuple[Pending, str]] = []
    for item, image in zip(pending, decoded):
        if image is None or image.shape[0] != channels:
            try:  # libjpeg-turbo, then PIL: they read what nvJPEG refuses
                image = decode_bytes(item.data.numpy().tobytes(), channels).to(device)
            except CorruptImage as exc:
                failed.append((item, str(exc)))
                continue
        out[item.row] = resized_crop(image, item.box, size)
    return out, failed
