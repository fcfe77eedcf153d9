"""Batched image operations with per-sample parameters, for float images in [0, 1].

Every function takes a batch (N, C, H, W) and one parameter per sample, and does the
whole batch in a few tensor operations: no Python loop over samples. Random parameters
are drawn by the `sample_*` functions from a caller's `torch.Generator`. A function
whose name ends in `_` changes its images in place (the pipeline's path: no fresh
memory per operation); the others leave them alone and return new ones.
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
    The sampling grid is computed in the images' dtype even under autocast (which would
    round the crop's coordinates to bf16).
    """
    n, c, height, width = images.shape
    top, left, h, w = boxes.unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    with torch.autocast(images.device.type, enabled=False):
        grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(images: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of RGB images (ITU-R 601-2 weights, as torchvision rounds them)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return torch.mul(r, _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def _per_sample(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Multiply by `factor` (N,); 1 leaves an image unchanged."""
    return adjust_brightness_(images.clone(), factor)


def adjust_brightness_(images: Tensor, factor: Tensor) -> Tensor:
    """`adjust_brightness` in place."""
    return images.mul_(_per_sample(factor.to(images.dtype))).clamp_(0, 1)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with each image's mean luma by `factor` (N,); 1 leaves it unchanged."""
    return adjust_contrast_(images.clone(), factor)


def adjust_contrast_(images: Tensor, factor: Tensor) -> Tensor:
    """`adjust_contrast` in place. The mean luma is the luma of the channel means (the same
    number, without a grayscale image)."""
    means = images.mean(dim=(2, 3))
    if images.shape[1] == 3:
        means = (means * torch.tensor(_LUMA, dtype=images.dtype, device=images.device)).sum(dim=1, keepdim=True)
    mean = _per_sample(means).expand_as(images)
    return images.lerp_(mean, _per_sample(1 - factor.to(images.dtype))).clamp_(0, 1)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's own grayscale by `factor` (N,); a no-op for 1 channel."""
    if images.shape[1] == 1:
        return images
    return adjust_saturation_(images.clone(), factor)


def adjust_saturation_(images: Tensor, factor: Tensor) -> Tensor:
    """`adjust_saturation` in place."""
    if images.shape[1] == 1:
        return images
    gray = grayscale(images).expand_as(images)
    return images.lerp_(gray, _per_sample(1 - factor.to(images.dtype))).clamp_(0, 1)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by `shift` (N,) turns in [-0.5, 0.5]; a no-op for 1 channel."""
    if images.shape[1] == 1:
        return images
    return adjust_hue_(images.clone(), shift)


def adjust_hue_(images: Tensor, shift: Tensor) -> Tensor:
    """`adjust_hue` in place: an HSV round trip without materialising S and V.

    Hue x 6 comes from the largest channel (ties resolved r, g, b as torchvision); value
    x saturation is the chroma max - min, so each channel is min + chroma x level(hue),
    with the levels the trapezoids |h - 3| - 1 (red), 2 - |h - 2| (green), 2 - |h - 4|
    (blue), clamped to [0, 1]. Branches are masks multiplied in, not `torch.where`, and
    every plane is 1 channel: several times faster on CPUs.
    """
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    is_r = torch.eq(r, maxc, out=torch.empty_like(maxc))  # float masks: comparisons write them directly
    is_g = torch.eq(g, maxc, out=torch.empty_like(maxc)).mul_(1 - is_r)
    is_b = (1 - is_r).sub_(is_g)
    # numerator of hue x 6 for each possible largest channel: (g - b), 2 chroma + (b - r), 4 chroma + (r - g)
    h6 = (g - b).mul_(is_r)
    h6.addcmul_(torch.sub(b, r).add_(chroma, alpha=2), is_g)
    h6.addcmul_(torch.sub(r, g).add_(chroma, alpha=4), is_b)
    h6.div_(torch.le(chroma, 0, out=torch.empty_like(chroma)).add_(chroma))
    h6.add_(shift.to(images.dtype).view(-1, 1, 1), alpha=6)
    h6.sub_(torch.floor(h6 / 6), alpha=6)
    torch.sub(h6, 3, out=r).abs_().sub_(1)
    torch.sub(h6, 2, out=g).abs_().neg_().add_(2)
    torch.sub(h6, 4, out=b).abs_().neg_().add_(2)
    return images.clamp_(0, 1).mul_(chroma.unsqueeze(1)).add_(minc.unsqueeze(1))


def to_grayscale_where(images: Tensor, mask: Tensor) -> Tensor:
    """Replace the images where `mask` (N,) by their grayscale (channels kept)."""
    if images.shape[1] == 1:
        return images
    return to_grayscale_where_(images.clone(), mask)


def to_grayscale_where_(images: Tensor, mask: Tensor) -> Tensor:
    """`to_grayscale_where` in place (a lerp by 0 or 1 is exact, and faster than `where`)."""
    if images.shape[1] == 1:
        return images
    gray = grayscale(images).expand_as(images)
    return images.lerp_(gray, _per_sample(mask.to(images.dtype)))


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each image with its own sigma (N,); sigma 0 leaves an image unchanged.

    Separable kernels, one grouped convolution per axis for the whole batch, reflect
    padding as torchvision; in the images' dtype even under autocast. On the CPU only
    the images with sigma > 0 are convolved (selecting them waits on no device there).
    """
    if images.device.type == "cpu":
        chosen = (sigma > 0).nonzero().squeeze(1)
        if chosen.numel() < images.shape[0]:
            out = images.clone()
            if chosen.numel():
                out[chosen] = _blur(images[chosen], sigma[chosen], kernel_size)
            return out
    return _blur(images, sigma, kernel_size)


def _blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
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
    with torch.autocast(images.device.type, enabled=False):
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


def normalize_(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """`normalize` in place."""
    return images.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
