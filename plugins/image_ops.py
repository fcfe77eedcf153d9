"""Batched image operations with per-sample parameters, for float images in [0, 1].

Every function takes a batch (N, C, H, W) and one parameter per sample, and does the
whole batch in a few tensor operations: no Python loop over samples. Random parameters
are drawn by the `sample_*` functions from a caller's `torch.Generator`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LUMA = (0.2989, 0.587, 0.114)


def uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    """n floats uniform in [low, high)."""
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def bernoulli(n: int, p: float, generator: torch.Generator, device: torch.device) -> Tensor:
    """n booleans, each True with probability p."""
    return torch.rand(n, generator=generator, device=device) < p


def sample_crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator, device: torch.device, attempts: int = 10,
) -> Tensor:
    """Random resized crop boxes (N, 4) as (top, left, h, w) in pixels.

    As torchvision's RandomResizedCrop: area fraction uniform in `scale`, log aspect ratio
    uniform in `ratio`; the first of `attempts` draws that fits the image is kept, and a
    sample none of whose draws fits gets the central crop of the closest allowed ratio.
    Boxes are continuous (no rounding): the crop is resampled with bilinear weights.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator, device=device))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, attempts, generator=generator, device=device))
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    any_fit = fits.any(dim=1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    top = (height - h) * torch.rand(n, generator=generator, device=device)
    left = (width - w) * torch.rand(n, generator=generator, device=device)
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(images: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop each image to its box (top, left, h, w), mirror where `flip`, resize to `size`.

    One `grid_sample` for the whole batch: each sample's box becomes an affine map from
    output to input coordinates (align_corners=False, so box edges map to pixel edges).
    """
    n, c, height, width = images.shape
    top, left, h, w = boxes.unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


_NEXT = [1, 2, 0]
_AFTER_NEXT = [2, 0, 1]


def grayscale(images: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of RGB images (ITU-R 601-2 weights, as torchvision rounds them)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _per_sample(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Multiply by `factor` (N,); 1 leaves an image unchanged."""
    return (images * _per_sample(factor)).clamp_(0, 1)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with each image's mean luma by `factor` (N,); 1 leaves it unchanged."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(factor)
    return (f * images + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's own grayscale by `factor` (N,); a no-op for 1 channel."""
    if images.shape[1] == 1:
        return images
    f = _per_sample(factor)
    return (f * images + (1 - f) * grayscale(images)).clamp_(0, 1)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by `shift` (N,) turns in [-0.5, 0.5]; a no-op for 1 channel.

    HSV round trip without materialising H, S and V: the hue sextant comes from the
    index of the largest channel (ties resolved r, g, b as in torchvision), and
    value x saturation is max - min, so the RGB result is max - (max - min) x f(hue).
    """
    if images.shape[1] == 1:
        return images
    maxc, index = images.max(dim=1, keepdim=True)
    delta = maxc - images.amin(dim=1, keepdim=True)
    # (g - b, b - r, r - g): the numerator of the hue formula for each possible max channel
    numerators = images[:, _NEXT] - images[:, _AFTER_NEXT]
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h6 = numerators.gather(1, index).div_(safe).add_(2 * index)
    h6 = h6.add_(6 * shift.view(-1, 1, 1, 1)).remainder_(6)
    return hsv_channels(h6, maxc, delta)


def hsv_channels(h6: Tensor, value: Tensor, chroma: Tensor) -> Tensor:
    """(N, 1, H, W) hue x 6 in [0, 6), value and chroma (value x saturation) -> RGB."""
    k = torch.tensor([5.0, 3.0, 1.0], device=h6.device, dtype=h6.dtype).view(1, 3, 1, 1)
    t = (k + h6).remainder_(6)
    channel = torch.minimum(t, 4 - t).clamp_(0, 1)
    return value - chroma * channel


def to_grayscale_where(images: Tensor, mask: Tensor) -> Tensor:
    """Replace the images where `mask` (N,) by their grayscale (channels kept)."""
    if images.shape[1] == 1:
        return images
    gray = grayscale(images).expand_as(images)
    return torch.where(_per_sample(mask), gray, images)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each image with its own sigma (N,); sigma 0 leaves an image unchanged.

    Separable kernels, one grouped convolution per axis for the whole batch, reflect
    padding as torchvision.
    """
    n, c, h, w = images.shape
    half = kernel_size // 2
    x = torch.arange(-half, half + 1, device=images.device, dtype=images.dtype)
    s = sigma.to(images.dtype).clamp_min(1e-6).view(-1, 1)
    kernel = torch.exp(-0.5 * (x.view(1, -1) / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    delta = (x == 0).to(images.dtype).expand_as(kernel)
    kernel = torch.where((sigma > 0).view(-1, 1), kernel, delta)
    kernel = kernel.repeat_interleave(c, dim=0)
    flat = images.reshape(1, n * c, h, w)
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return flat.view(n, c, h, w)


def solarize_where(images: Tensor, mask: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert pixels >= threshold in the images where `mask` (N,)."""
    solarized = torch.where(images >= threshold, 1.0 - images, images)
    return torch.where(_per_sample(mask), solarized, images)


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Per-channel (x - mean) / std; mean and std are (C,) tensors."""
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
