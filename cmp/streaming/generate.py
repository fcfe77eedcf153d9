"""A synthetic class-per-folder tree of JPEGs, to try streaming on without ImageNet.

    python -m cmp.streaming.generate [OUT] [--images 2000] [--val-images 500] [--classes 10] [--seed 0] [--shards]

writes `OUT/train/class_KK/*.jpg` and `OUT/val/class_KK/*.jpg` (default OUT:
`data/streamed_small`, where `recipes/streamed_small.yaml` reads), and with `--shards`
the same images as WebDataset tar shards in `OUT/shards/train/` and `OUT/shards/val/`.

Images are deterministic (sample i of a split is drawn from a generator seeded by (seed,
split, i), so the same command writes the same bytes), of mixed sides 200-500 px, and
every 20th one greyscale. A class is a texture family (checkerboard, rings, scattered
discs, squares, cross-hatching, a dot grid, smooth blobs, fine grain, vertical or
horizontal stripes) drawn at a random scale and phase, in a random palette, half the
time with another family's texture faintly over it, with noise: a random resized crop
keeps the texture, so a self-supervised method can learn it, while colour says nothing
of the class and raw pixels little.
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_OUT = Path("data/streamed_small")
FAMILIES = ("checker", "rings", "discs", "squares", "hatch", "dots", "blobs", "grain", "vertical", "horizontal")
SPLITS = {"train": 0, "val": 1}


def palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours (0-255) of a random hue, dark and light: colour says nothing of the class."""
    hue = float(rng.uniform())
    dark = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 0.9), rng.uniform(0.15, 0.45))) * 255
    light = np.array(colorsys.hsv_to_rgb((hue + rng.uniform(-0.15, 0.15)) % 1.0, rng.uniform(0.2, 0.6),
                                         rng.uniform(0.7, 1.0))) * 255
    return dark, light


def texture(family: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A (height, width) float32 pattern in [0, 1] of one texture family, random scale and phase."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = float(rng.uniform(0.04, 0.14)) * min(height, width)
    px, py = rng.uniform(0, period, 2)
    tau = 2 * np.pi / period
    if family == "checker":
        v = (np.sin((x + px) * tau) * np.sin((y + py) * tau) > 0).astype(np.float32)
    elif family == "rings":
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        v = 0.5 + 0.5 * np.sin(np.hypot(x - cx, y - cy) * tau)
    elif family in ("discs", "squares", "dots"):
        cell = period * (2.0 if family != "dots" else 1.0)
        dx = (x + px) % cell - cell / 2
        dy = (y + py) % cell - cell / 2
        radius = cell * (0.35 if family != "dots" else 0.18)
        inside = np.hypot(dx, dy) < radius if family != "squares" else np.maximum(abs(dx), abs(dy)) < radius
        v = inside.astype(np.float32)
    elif family == "hatch":
        v = 0.5 + 0.5 * np.sin((x + y + px) * tau / 1.4) * np.sin((x - y + py) * tau / 1.4)
    elif family == "blobs":
        coarse = rng.normal(size=(max(2, height // 48), max(2, width // 48))).astype(np.float32)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        v = 1 / (1 + np.exp(-2.5 * np.asarray(image, dtype=np.float32)))
    elif family == "grain":
        coarse = rng.uniform(size=(max(2, height // 3), max(2, width // 3))).astype(np.float32)
        v = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.NEAREST), dtype=np.float32)
    elif family == "vertical":
        v = 0.5 + 0.5 * np.sin((x + px) * tau)
    elif family == "horizontal":
        v = 0.5 + 0.5 * np.sin((y + py) * tau)
    else:
        raise ValueError(f"unknown texture family {family!r}")
    return v


def picture(k: int, rng: np.random.Generator, sides: tuple[int, int] = (200, 500)) -> Image.Image:
    """An image of class k: its texture family (k mod 10) in a random palette, half the time
    with another family's texture faintly over it, brightness and noise; random size."""
    width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
    v = texture(FAMILIES[k % len(FAMILIES)], height, width, rng)
    if rng.uniform() < 0.5:
        other = FAMILIES[(k + int(rng.integers(1, len(FAMILIES)))) % len(FAMILIES)]
        alpha = float(rng.uniform(0.15, 0.35))
        v = (1 - alpha) * v + alpha * texture(other, height, width, rng)
    dark, light = palette(rng)
    pixels = dark + (light - dark) * v[..., None]
    pixels = pixels * rng.uniform(0.75, 1.15) + rng.normal(0, 10, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def generate(out: Path, images: int = 2000, val_images: int = 500, classes: int = 10, seed: int = 0,
             shards: bool = False) -> dict[str, int]:
    """Write the tree (and shards); returns the number of images per split."""
    if classes < 2 or images < classes or val_images < classes:
        raise ValueError("need at least 2 classes and one image per class in each split")
    counts = {"train": images, "val": val_images}
    for split, count in counts.items():
        for k in range(classes):
            (out / split / f"class_{k:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            k = i % classes
            rng = np.random.default_rng([seed, SPLITS[split], i])
            image = picture(k, rng)
            if i % 20 == 19:
                image = image.convert("L")
            image.save(out / split / f"class_{k:02d}" / f"{split}_{i:06d}.jpg", "JPEG", quality=int(rng.integers(80, 96)))
    if shards:
        from cmp.streaming import build_index, write_shards

        for split in counts:
            write_shards(build_index(out, split, use_cache=False), out / "shards" / split, per_shard=500)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cmp.streaming.generate", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--val-images", type=int, default=500, help="validation images (default 500)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", action="store_true", help="also write WebDataset tar shards under OUT/shards/")
    args = parser.parse_args(argv)
    try:
        counts = generate(args.out, args.images, args.val_images, args.classes, args.seed, args.shards)
    except ValueError as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {counts['train']} training and {counts['val']} validation images of {args.classes} classes "
          f"under {args.out}/" + (f" (and shards under {args.out / 'shards'}/)" if args.shards else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
