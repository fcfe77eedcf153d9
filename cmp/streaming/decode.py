"""One encoded image -> one uint8 crop of the training size, taken from the full-resolution image.

Decoding is torchvision's (`torchvision.io.decode_image`: libjpeg-turbo, libpng,
libwebp), with PIL for what it does not read (BMP): on 200-500 px JPEGs it decoded about
1 100 images/s on one core of the project's machine against PIL's 750-800 (PIL's
`draft` mode, decoding a JPEG at a reduced scale, did not close the gap at these sizes).
torchvision 0.29 deprecates its decoders for TorchCodec; where they are gone, PIL
decodes everything.

A training crop's parameters come from a generator seeded by (seed, epoch, sample
index), never from a stream shared between samples: the same sample in the same epoch
gets the same crop in whichever worker, batch or resumed run it is decoded, and a new
epoch a new crop. The crop follows torchvision's `RandomResizedCrop` (area fraction
uniform in `scale`, log aspect ratio uniform in `ratio`, ten tries, else the central
crop of the nearest allowed ratio) and is resized with antialiasing.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2.functional import rgb_to_grayscale

try:
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # deprecated since torchvision 0.29 in favour of TorchCodec: PIL then decodes all
    decode_image = None

_SOURCE_PREFIX = re.compile(r"^\w+, \S+:\d+, ")
"""torchvision's errors start with its C++ function, file and line: left out of messages."""

_BUFFER = re.compile(r" <_io\.BytesIO object at 0x[0-9a-f]+>")
"""PIL names the in-memory file it was given: of no use in a message."""

Box = tuple[int, int, int, int]
"""A crop (top, left, height, width) in pixels of the full-resolution image."""


@dataclass(frozen=True)
class CropSpec:
    """The random resized crop's ranges: area fraction and aspect ratio (width / height)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


class CorruptImage(Exception):
    """Bytes that no decoder can read as an image; the message says why."""


def decode_bytes(data: bytes | bytearray, channels: int) -> Tensor:
    """Encoded bytes -> uint8 (channels, H, W), RGB for 3 channels, grey for 1.

    Raises `CorruptImage` when neither torchvision nor PIL can decode them.
    """
    if not data:
        raise CorruptImage("empty file")
    if decode_image is None:
        image = _decode_with_pil(data, channels, None)
    else:
        webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"  # torchvision decodes WebP in colour only
        mode = ImageReadMode.RGB if channels == 3 or webp else ImageReadMode.GRAY
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # said on every call since 0.29
                image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
        except (RuntimeError, ValueError) as first:
            image = _decode_with_pil(data, channels, first)
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    if image.shape[0] != channels:  # a decoder that ignored the mode asked for
        colour = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
        image = rgb_to_grayscale(colour) if channels == 1 else colour.contiguous()
    return image


def _decode_with_pil(data: bytes | bytearray, channels: int, first: Exception | None) -> Tensor:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            array = np.asarray(opened.convert("RGB" if channels == 3 else "L"))
    except Exception as second:  # PIL raises many types for bad bytes (OSError, SyntaxError, ...)
        said = _BUFFER.sub("", str(second))
        if first is not None:
            said = f"{_SOURCE_PREFIX.sub('', str(first).strip()).split('. ')[0] or type(first).__name__}; PIL: {said}"
        raise CorruptImage(said) from None
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.unsqueeze(0)


def crop_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's crop in one epoch (numpy's SeedSequence mixes the three)."""
    return np.random.default_rng([seed, epoch, index])


def random_crop_box(height: int, width: int, spec: CropSpec, rng: np.random.Generator) -> Box:
    """A random resized crop box, as torchvision's `RandomResizedCrop.get_params`."""
    area = height * width
    log_ratio = (math.log(spec.ratio[0]), math.log(spec.ratio[1]))
    targets = area * rng.uniform(spec.scale[0], spec.scale[1], size=10)
    aspects = np.exp(rng.uniform(log_ratio[0], log_ratio[1], size=10))
    widths = np.rint(np.sqrt(targets * aspects)).astype(np.int64)
    heights = np.rint(np.sqrt(targets / aspects)).astype(np.int64)
    fits = np.flatnonzero((widths > 0) & (widths <= width) & (heights > 0) & (heights <= height))
    if len(fits):
        h, w = int(heights[fits[0]]), int(widths[fits[0]])
        return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < spec.ratio[0]:
        w, h = width, int(round(width / spec.ratio[0]))
    elif in_ratio > spec.ratio[1]:
        h, w = height, int(round(height * spec.ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def center_box(height: int, width: int, fraction: float) -> Box:
    """The central square of side `fraction` x the shorter side: resizing it to S equals
    resizing the shorter side to S / fraction and taking the central S x S (224 of 256)."""
    side = max(1, int(round(min(height, width) * fraction)))
    return (height - side) // 2, (width - side) // 2, side, side


def resized_crop(image: Tensor, box: Box, size: int) -> Tensor:
    """uint8 (C, H, W) cropped to `box` and resized to (C, size, size), antialiased bilinear.

    On the CPU PyTorch resizes uint8 directly; elsewhere (CUDA has no uint8 antialiased
    kernel) through float32 (`resize_through_float`).
    """
    top, left, h, w = box
    part = image[None, :, top : top + h, left : left + w]
    if image.device.type == "cpu":
        return F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return resize_through_float(part, size)[0]


def resize_through_float(images: Tensor, size: int) -> Tensor:
    """uint8 (N, C, H, W) -> (N, C, size, size), antialiased bilinear in float32, rounded
    back to uint8: within one level of the uint8 kernel, for devices that lack it."""
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def train_crop(data: bytes | bytearray, channels: int, size: int, spec: CropSpec, seed: int, epoch: int, index: int) -> Tensor:
    """A training sample: decoded, randomly cropped at full resolution, resized to size x size."""
    image = decode_bytes(data, channels)
    box = random_crop_box(image.shape[1], image.shape[2], spec, crop_generator(seed, epoch, index))
    return resized_crop(image, box, size)


def eval_crop(data: bytes | bytearray, channels: int, size: int, fraction: float) -> Tensor:
    """An evaluation sample: decoded, central crop (`center_box`), resized; no randomness."""
    image = decode_bytes(data, channels)
    return resized_crop(image, center_box(image.shape[1], image.shape[2], fraction), size)
