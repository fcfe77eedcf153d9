"""Data sets as uint8 tensors: Fashion-MNIST, digits, CIFAR-10/100, STL-10, an image folder.

Local copies come first: `data.root`, then `$CMP_DATA`, then well-known system folders
(Debian's `dataset-fashion-mnist`), then the download cache (`$CMP_CACHE`, default
`~/.cache/cmp`), where torchvision's downloader puts files when `data.download` allows.
When nothing is found the error lists every place that was tried.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cmp import hookimpl
from cmp.api import DataError
from cmp.api.contracts import ImageData
from cmp.api.hookspecs import Register
from cmp.api.params import Fraction, PositiveInt

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SYSTEM_FOLDERS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")]}


def cache_dir() -> Path:
    """Where downloads go: `$CMP_CACHE`, else `~/.cache/cmp`."""
    return Path(os.environ.get("CMP_CACHE", Path.home() / ".cache" / "cmp")).expanduser()


def candidate_roots(root: Path | None, dataset: str) -> list[tuple[str, Path | None]]:
    """(label, folder) pairs in search order; a None folder was not configured."""
    env = os.environ.get("CMP_DATA")
    places: list[tuple[str, Path | None]] = [
        ("data.root", root),
        ("$CMP_DATA", Path(env).expanduser() if env else None),
    ]
    places += [("system folder", p) for p in SYSTEM_FOLDERS.get(dataset, [])]
    places.append(("download cache", cache_dir() / dataset))
    return places


def _created_by(target: Path) -> list[Path]:
    """The folders a download into `target` would create: `target` and its missing parents."""
    missing = []
    for folder in [target, *target.parents]:
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _download(target: Path, fetch: Callable[[], Any]) -> Any:
    """`fetch()` a download into `target`; when it fails, remove what it left behind.

    A failed download must not leave an empty or half-filled cache folder that looks
    like a data set on the next search: the folders it created (target and missing
    parents) are removed, a folder that was already there keeps what it held.
    """
    created = _created_by(target)
    try:
        return fetch()
    except BaseException:
        if created:
            shutil.rmtree(created[-1], ignore_errors=True)
        raise


def _describe(places: list[tuple[str, Path | None]]) -> str:
    return "; ".join(f"{label} {path}" if path else f"{label} (not set)" for label, path in places)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the MNIST family's format."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError("not an IDX file of unsigned bytes", where=str(path))
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"IDX header says {dims} but the file holds {data.size} values (truncated?)", where=str(path))
    return data.reshape(dims)


def _find_idx(folder: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST files in `folder` or its usual sub-folders, else None."""
    for sub in (folder, folder / "FashionMNIST" / "raw", folder / "fashion-mnist", folder / "fashion_mnist"):
        found = {}
        for key, stem in FASHION_FILES.items():
            for name in (stem, stem + ".gz"):
                if (sub / name).is_file():
                    found[key] = sub / name
                    break
        if len(found) == len(FASHION_FILES):
            return found
    return None


def fashion_mnist(root: Path | None, download: bool, split_seed: int) -> ImageData:
    """Fashion-MNIST: 60 000 train / 10 000 test 28x28 grayscale images, 10 classes."""
    places = candidate_roots(root, "fashion_mnist")
    for _, folder in places:
        files = _find_idx(folder) if folder is not None and folder.is_dir() else None
        if files is not None:
            return _fashion_from(files)
    failure = "downloading is off (data.download: false)"
    if download:
        target = cache_dir() / "fashion_mnist"
        try:
            import torchvision

            _download(target, lambda: [
                torchvision.datasets.FashionMNIST(str(target), train=train, download=True) for train in (True, False)
            ])
            files = _find_idx(target)
            if files is not None:
                return _fashion_from(files)
            failure = "the download finished but its files were not found"
        except Exception as exc:  # any network or disk failure ends in one message below
            failure = f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    raise DataError(
        f"Fashion-MNIST not found. Looked in: {_describe(places)}; {failure}. Install Debian's "
        "dataset-fashion-mnist, or set data.root to a folder holding the four idx files",
        where="data.dataset fashion_mnist",
    )


def _fashion_from(files: dict[str, Path]) -> ImageData:
    arrays = {key: read_idx(path) for key, path in files.items()}
    return ImageData(
        "fashion_mnist",
        torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        list(FASHION_CLASSES),
    )


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A fixed random split of range(n): (train indices, test indices)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(n * test_fraction))
    return order[n_test:], order[:n_test]


def digits(root: Path | None, download: bool, split_seed: int, *, test_fraction: Fraction = 0.2) -> ImageData:
    """scikit-learn's digits: 1 797 8x8 grayscale images, 10 classes, split by split_seed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images * 16).clip(0, 255).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = split_indices(len(labels), test_fraction, split_seed)
    return ImageData("digits", images[train], labels[train], images[test], labels[test], [str(i) for i in range(10)])


def _torchvision_set(name: str, root: Path | None, download: bool, make: Callable[[Path, bool], tuple[Any, Any]]) -> tuple[Any, Any]:
    """Try each candidate folder without downloading, then the cache with downloading."""
    places = candidate_roots(root, name)
    for _, folder in places:
        if folder is not None and folder.is_dir():
            try:
                return make(folder, False)
            except (RuntimeError, FileNotFoundError, OSError):
                continue
    failure = "downloading is off (data.download: false)"
    if download:
        try:
            return _download(cache_dir() / name, lambda: make(cache_dir() / name, True))
        except Exception as exc:  # network or disk failure: reported below
            failure = f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    raise DataError(
        f"{name} not found. Looked in: {_describe(places)}; {failure}. Set data.root to a folder "
        "holding torchvision's files for it",
        where=f"data.dataset {name}",
    )


def _cifar(name: str, root: Path | None, download: bool) -> ImageData:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100

    def make(folder: Path, dl: bool) -> tuple[Any, Any]:
        return cls(str(folder), train=True, download=dl), cls(str(folder), train=False, download=dl)

    train, test = _torchvision_set(name, root, download, make)
    return ImageData(
        name,
        torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(train.targets, dtype=torch.int64),
        torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(test.targets, dtype=torch.int64),
        list(train.classes),
    )


def cifar10(root: Path | None, download: bool, split_seed: int) -> ImageData:
    """CIFAR-10: 50 000 train / 10 000 test 32x32 colour images, 10 classes (torchvision)."""
    return _cifar("cifar10", root, download)


def cifar100(root: Path | None, download: bool, split_seed: int) -> ImageData:
    """CIFAR-100: 50 000 train / 10 000 test 32x32 colour images, 100 classes (torchvision)."""
    return _cifar("cifar100", root, download)


def stl10(root: Path | None, download: bool, split_seed: int, *, unlabeled: bool = True) -> ImageData:
    """STL-10: 5 000 labelled train / 8 000 test 96x96 images; + 100 000 unlabelled for training."""
    import torchvision

    splits = ["train", "test"] + (["unlabeled"] if unlabeled else [])

    def make(folder: Path, dl: bool) -> tuple[Any, Any]:
        sets = [torchvision.datasets.STL10(str(folder), split=s, download=dl) for s in splits]
        return sets, None

    sets, _ = _torchvision_set("stl10", root, download, make)
    train, test = sets[0], sets[1]
    return ImageData(
        "stl10",
        torch.from_numpy(train.data), torch.from_numpy(train.labels.astype(np.int64)),
        torch.from_numpy(test.data), torch.from_numpy(test.labels.astype(np.int64)),
        list(train.classes),
        unlabeled_images=torch.from_numpy(sets[2].data) if unlabeled else None,
    )


def image_folder(
    root: Path | None, download: bool, split_seed: int, *,
    size: PositiveInt = 64, test_fraction: Fraction = 0.2, grayscale: bool = False,
) -> ImageData:
    """A folder of class sub-folders of images (or train/ and test/ folders of them).

    Images are resized to size x size once, at load time; without train/ and test/ the
    split is random with split_seed.
    """
    if root is None:
        raise DataError("image_folder needs data.root: a folder of class sub-folders", where="data.root")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_x, train_y, classes = _read_folder(root / "train", size, grayscale, None)
        test_x, test_y, _ = _read_folder(root / "test", size, grayscale, classes)
        return ImageData("image_folder", train_x, train_y, test_x, test_y, classes)
    images, labels, classes = _read_folder(root, size, grayscale, None)
    train, test = split_indices(len(labels), test_fraction, split_seed)
    return ImageData("image_folder", images[train], labels[train], images[test], labels[test], classes)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _read_folder(folder: Path, size: int, grayscale: bool, classes: list[str] | None) -> tuple[Tensor, Tensor, list[str]]:
    from PIL import Image, UnidentifiedImageError

    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = classes or found
    if not classes:
        raise DataError("holds no class sub-folders", where=f"data.root {folder}")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"classes {unknown} are not in the training folder", where=f"data.root {folder}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    mode = "L" if grayscale else "RGB"
    for label, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                    images.append(np.asarray(img, dtype=np.uint8))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"cannot read image: {exc}", where=str(path)) from None
            labels.append(label)
    if not images:
        raise DataError("holds no images (png, jpg, ...)", where=f"data.root {folder}")
    stacked = torch.from_numpy(np.stack(images))
    stacked = stacked.unsqueeze(1) if grayscale else stacked.permute(0, 3, 1, 2)
    return stacked.contiguous(), torch.tensor(labels, dtype=torch.int64), classes


@hookimpl
def cmp_register_datasets(register: Register) -> None:
    register("fashion_mnist", fashion_mnist)
    register("digits", digits)
    register("cifar10", cifar10)
    register("cifar100", cifar100)
    register("stl10", stl10)
    register("image_folder", image_folder)
