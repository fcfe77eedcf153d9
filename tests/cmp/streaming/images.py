"""Small generated image trees for the streaming tests: JPEGs of mixed sizes and modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("ant", "bee", "cat")
CORRUPT = Path("bee") / "broken.jpg"


def picture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB (height, width, 3) uint8 image: two colour gradients and noise, as a photo compresses."""
    x = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0, 255, 3)
    y = np.linspace(0, 1, height)[:, None, None] * rng.uniform(0, 255, 3)
    return ((x + y) / 2 + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)


def halves(width: int, height: int) -> np.ndarray:
    """A grey (height, width) image: left half black, right half white."""
    image = np.zeros((height, width), dtype=np.uint8)
    image[:, width // 2 :] = 255
    return image


def write_jpegs(folder: Path, count: int, seed: int, sizes: tuple[int, int] = (200, 500), grey_every: int = 3) -> list[Path]:
    """`count` JPEGs of random sides in `sizes` in `folder`, every `grey_every`-th one greyscale ('L')."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        width, height = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
        image = Image.fromarray(picture(width, height, rng))
        if grey_every and k % grey_every == grey_every - 1:
            image = image.convert("L")
        path = folder / f"img_{k:03d}.jpg"
        image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def make_tree(root: Path, train_per_class: int = 13, val_per_class: int = 2, seed: int = 0) -> Path:
    """root/train/<class>/ (13 JPEGs each, one PNG of `halves` in cat/, a corrupt bee/broken.jpg)
    and root/val/<class>/ (2 JPEGs each): 40 readable training images and one corrupt."""
    for k, name in enumerate(CLASSES):
        write_jpegs(root / "train" / name, train_per_class, seed + k)
        write_jpegs(root / "val" / name, val_per_class, seed + 100 + k)
    Image.fromarray(halves(400, 300)).save(root / "train" / "cat" / "halves.png")
    (root / "train" / CORRUPT).write_bytes(np.random.default_rng(seed).bytes(2000))
    return root
