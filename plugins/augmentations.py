"""Augmentation pipelines: SimCLR's, and BYOL's asymmetric pair of views.

Each view is random resized crop + flip, colour jitter (with probability), grayscale,
Gaussian blur and solarize, batched with per-sample parameters (`image_ops`). On
1-channel data saturation, hue and grayscale have nothing to act on and are skipped;
brightness and contrast still apply.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any

import annotated_types as at
import torch
import torch.nn.functional as F
from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import Augmentation, DataInfo
from cmp.api.hookspecs import Register
from cmp.api.params import FractionRange, NonNegative, NonNegativeInt, PositiveInt, PositiveRange, Probability
from cmp_plugins import image_ops as ops

Hue = Annotated[float, at.Ge(0), at.Le(0.5)]
Views = Annotated[int, at.Ge(2)]


@dataclass(frozen=True)
class ViewSpec:
    """The random operations of one view and their ranges and probabilities."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    size: int | None = None
    """Output side of this view; None: the pipeline's size (multi-crop's small views set it)."""


def sample_view_params(
    spec: ViewSpec, n: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> dict[str, Tensor]:
    """Draw every random parameter of one view for n samples (all tensors of length n).

    Jitter factors of samples that skip jitter are exactly the identity (1, 1, 1, 0).
    """
    g, d = generator, device
    jitter = ops.bernoulli(n, spec.jitter_prob, g, d)

    def factor(strength: float) -> Tensor:
        drawn = ops.uniform(n, max(0.0, 1 - strength), 1 + strength, g, d)
        return torch.where(jitter, drawn, torch.ones_like(drawn))

    brightness, contrast, saturation = factor(spec.brightness), factor(spec.contrast), factor(spec.saturation)
    hue = ops.uniform(n, -spec.hue, spec.hue, g, d)
    blur = ops.bernoulli(n, spec.blur_prob, g, d)
    sigma = ops.uniform(n, spec.blur_sigma[0], spec.blur_sigma[1], g, d)
    return {
        "box": ops.sample_crop_boxes(n, height, width, spec.crop_scale, spec.crop_ratio, g, d),
        "flip": ops.bernoulli(n, spec.flip_prob, g, d),
        "jitter": jitter,
        "brightness": brightness,
        "contrast": contrast,
        "saturation": saturation,
        "hue": torch.where(jitter, hue, torch.zeros_like(hue)),
        "grayscale": ops.bernoulli(n, spec.grayscale_prob, g, d),
        "sigma": torch.where(blur, sigma, torch.zeros_like(sigma)),
        "solarize": ops.bernoulli(n, spec.solarize_prob, g, d),
    }


class ViewPipeline(Augmentation):
    """Views from uint8 images, one `ViewSpec` per view, normalised with the data's stats.

    `size` is the side of the global views and of the evaluation input; a view whose spec
    sets its own size (a multi-crop local view) is cropped to that. The first
    `global_views` views are the large ones that pairings use as positives. On the CPU a
    large batch is augmented in chunks (`chunk_size`), one per core (`chunk_workers`);
    the views are the same as the whole batch's.
    """

    def __init__(self, data: DataInfo, specs: list[ViewSpec], size: int | None, global_views: int | None = None) -> None:
        super().__init__()
        self.specs = specs
        self.num_views = len(specs)
        self.global_views = global_views or len(specs)
        self.size = size or data.height
        self.channels = data.channels
        self.register_buffer("mean", torch.tensor(data.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(data.std, dtype=torch.float32), persistent=False)

    def forward(self, images: Tensor, generator: torch.Generator) -> list[Tensor]:
        n, c, h, w = images.shape
        params = [sample_view_params(spec, n, h, w, generator, images.device) for spec in self.specs]
        step = chunk_size(images)
        if step >= n:
            x = images.float().div_(255)
            return [self.apply_view(x, spec, p) for spec, p in zip(self.specs, params)]
        views = [images.new_empty((n, c, spec.size or self.size, spec.size or self.size), dtype=torch.float32)
                 for spec in self.specs]

        def augment(start: int) -> None:
            part = slice(start, start + step)
            x = images[part].float().div_(255)
            for view, spec, p in zip(views, self.specs, params):
                view[part] = self.apply_view(x, spec, {key: value[part] for key, value in p.items()})

        starts = range(0, n, step)
        threads = torch.get_num_threads()
        if threads > 1 and len(starts) > 1:
            list(chunk_workers(threads).map(augment, starts))
        else:
            for start in starts:
                augment(start)
        return views

    def apply_view(self, x: Tensor, spec: ViewSpec, p: dict[str, Tensor]) -> Tensor:
        """One view of float images in [0, 1] with drawn parameters (`sample_view_params`).

        Operations whose probability is 0 in `spec` are skipped outright; the others run
        on the whole batch with identity parameters for the samples that skip them, so
        nothing waits on the device to decide. Jitter runs in the fixed order brightness,
        contrast, saturation, hue (torchvision shuffles it per image).
        """
        size = spec.size or self.size
        x = ops.resized_crop(x, p["box"], p["flip"], size)  # a new tensor: the colour ops below work in place on it
        if spec.jitter_prob > 0:
            x = ops.adjust_brightness_(x, p["brightness"])
            x = ops.adjust_contrast_(x, p["contrast"])
            x = ops.adjust_saturation_(x, p["saturation"])
            if spec.hue > 0:
                x = ops.adjust_hue_(x, p["hue"])
        if spec.grayscale_prob > 0:
            x = ops.to_grayscale_where_(x, p["grayscale"])
        if spec.blur_prob > 0:
            x = ops.gaussian_blur(x, p["sigma"], blur_kernel(size))
        if spec.solarize_prob > 0:
            x = ops.solarize_where(x, p["solarize"])
        return ops.normalize_(x, self.mean, self.std)

    def preprocess(self, images: Tensor) -> Tensor:
        x = images.float().div_(255)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return ops.normalize(x, self.mean, self.std)


CPU_CHUNK_VALUES = 1 << 20
"""Pixel values per chunk of a batch augmented on the CPU (4 MiB of float32)."""


def chunk_size(images: Tensor) -> int:
    """Images augmented at once: the whole batch on an accelerator; on the CPU, chunks
    of about `CPU_CHUNK_VALUES` values, which stay in cache and reuse the allocator's
    memory (a batch of 512 RGB 96x96 images is 57 MB per tensor: every intermediate
    would be a fresh mapping, page-faulted in). Smaller chunks would not pay: their
    operations get too short for worker threads to share the interpreter well. The
    parameters are drawn for the whole batch, so the views do not depend on the chunking."""
    n = images.shape[0]
    if images.device.type != "cpu" or n == 0:
        return max(1, n)
    return max(1, CPU_CHUNK_VALUES // max(1, images[0].numel()))


_workers: dict[tuple[int, int], ThreadPoolExecutor] = {}


def chunk_workers(threads: int) -> ThreadPoolExecutor:
    """`threads` worker threads that augment CPU chunks side by side, each running its
    operations on one core, for this process (a forked child makes its own).

    One chunk per core is faster than every operation split across the cores: a small
    operation's parallel region costs more than it saves, and on a shared machine each
    one waits for the slowest core (on 2 busy cores, 512 RGB 96x96 images: 1.5 s with
    both cores on each operation, 0.5 s with a chunk per core). Each worker sets its
    own OpenMP team to 1 thread once; the caller's thread count is restored after.
    """
    key = (os.getpid(), threads)
    if key not in _workers:
        ready = threading.Barrier(threads + 1)

        def single_threaded() -> None:
            torch.get_num_threads()  # torch's per-thread set-up first, so it cannot undo the next line
            torch.set_num_threads(1)
            ready.wait()

        pool = ThreadPoolExecutor(threads, thread_name_prefix="cmp-augment", initializer=single_threaded)
        for _ in range(threads):  # every worker starts now: none is idle before all pass the barrier
            pool.submit(lambda: None)
        ready.wait()
        torch.set_num_threads(threads)
        _workers[key] = pool
    return _workers[key]


def blur_kernel(size: int) -> int:
    """SimCLR's blur kernel: about 10% of the image side, odd, at least 3."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def simclr(
    data: DataInfo,
    *,
    size: PositiveInt | None = None,
    crop_scale: FractionRange = (0.08, 1.0),
    crop_ratio: PositiveRange = (3 / 4, 4 / 3),
    flip_prob: Probability = 0.5,
    jitter_strength: NonNegative = 1.0,
    jitter_prob: Probability = 0.8,
    brightness: NonNegative | None = None,
    contrast: NonNegative | None = None,
    saturation: NonNegative | None = None,
    hue: Hue | None = None,
    grayscale_prob: Probability = 0.2,
    blur_prob: Probability | None = None,
    blur_sigma: PositiveRange = (0.1, 2.0),
    solarize_prob: Probability = 0.0,
    num_views: Views = 2,
) -> ViewPipeline:
    """SimCLR's augmentation (Chen et al. 2020, appendix A), identical for every view.

    Jitter is 0.8s brightness, contrast and saturation and 0.2s hue with s =
    `jitter_strength`, unless given one by one. `blur_prob` None means the paper's
    choice: 0.5 for images of 64 pixels or more, none for small (CIFAR-sized) images.
    """
    s = jitter_strength
    out = size or data.height
    spec = ViewSpec(
        crop_scale=crop_scale, crop_ratio=crop_ratio, flip_prob=flip_prob,
        brightness=0.8 * s if brightness is None else brightness,
        contrast=0.8 * s if contrast is None else contrast,
        saturation=0.8 * s if saturation is None else saturation,
        hue=min(0.5, 0.2 * s) if hue is None else hue,
        jitter_prob=jitter_prob, grayscale_prob=grayscale_prob,
        blur_prob=(0.5 if out >= 64 else 0.0) if blur_prob is None else blur_prob,
        blur_sigma=blur_sigma, solarize_prob=solarize_prob,
    )
    return ViewPipeline(data, [spec] * num_views, size)


def byol(
    data: DataInfo,
    *,
    size: PositiveInt | None = None,
    crop_scale: FractionRange = (0.08, 1.0),
    jitter_prob: Probability = 0.8,
    grayscale_prob: Probability = 0.2,
    blur_probs: tuple[Probability, Probability] = (1.0, 0.1),
    solarize_probs: tuple[Probability, Probability] = (0.0, 0.2),
) -> ViewPipeline:
    """BYOL's asymmetric pair (Grill et al. 2020, table 6): jitter 0.4/0.4/0.2/0.1;
    blur p 1.0 / 0.1 and solarize p 0 / 0.2 for the first / second view."""
    specs = [
        ViewSpec(
            crop_scale=crop_scale, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
            jitter_prob=jitter_prob, grayscale_prob=grayscale_prob,
            blur_prob=blur, solarize_prob=solarize,
        )
        for blur, solarize in zip(blur_probs, solarize_probs)
    ]
    return ViewPipeline(data, specs, size)


def multicrop(
    data: DataInfo,
    *,
    size: PositiveInt | None = None,
    global_views: Views = 2,
    local_views: NonNegativeInt = 4,
    local_size: PositiveInt | None = None,
    global_scale: FractionRange = (0.14, 1.0),
    local_scale: FractionRange = (0.05, 0.14),
    jitter_strength: NonNegative = 1.0,
    jitter_prob: Probability = 0.8,
    grayscale_prob: Probability = 0.2,
    blur_prob: Probability | None = None,
) -> ViewPipeline:
    """Multi-crop (SwAV, Caron et al. 2020): `global_views` large crops, then
    `local_views` small ones of side `local_size` (default 3/7 of the large side, as
    SwAV's 96/224), each with SimCLR's colour distortion. Pair with `pairs: multicrop`."""
    side = size or data.height
    small = local_size or max(8, round(side * 3 / 7))
    common: dict[str, Any] = dict(
        brightness=0.8 * jitter_strength, contrast=0.8 * jitter_strength, saturation=0.8 * jitter_strength,
        hue=min(0.5, 0.2 * jitter_strength), jitter_prob=jitter_prob, grayscale_prob=grayscale_prob,
        blur_prob=(0.5 if side >= 64 else 0.0) if blur_prob is None else blur_prob,
    )
    specs = [ViewSpec(crop_scale=global_scale, **common)] * global_views
    specs += [ViewSpec(crop_scale=local_scale, size=small, **common)] * local_views
    return ViewPipeline(data, specs, size, global_views)


@hookimpl
def cmp_register_augmentations(register: Register) -> None:
    register("simclr", simclr)
    register("byol", byol)
    register("multicrop", multicrop)
