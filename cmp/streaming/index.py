"""Which encoded images a split holds: an ImageNet-style class-per-folder tree, indexed once.

`build_index(root, "train")` lists `root/train/<class>/**/*.{jpg,jpeg,png,webp,bmp}`
(labels follow the class order: sorted folder names, or the `classes` given, which also
restricts the split to them, as ImageNet-100 does). Scanning a million files takes
minutes on a network disk, so the listing is kept in a small JSON file in a cache folder
and reused while no folder of the split changed (a file added or removed changes its
folder's modification time: a second start stats the folders, not the files). Paths are held packed in two numpy arrays, not a list of Python
strings: DataLoader workers forked from the trainer then share them page for page, where
touching a million string objects' reference counts would copy them into every worker.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from cmp.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
INDEX_FORMAT = 1


class EncodedImages(Protocol):
    """Encoded images with labels, read one at a time by index (a folder or tar shards)."""

    classes: list[str]
    labels: np.ndarray

    def __len__(self) -> int: ...

    def read(self, i: int) -> bytes:
        """The encoded bytes of sample `i` (OSError when they cannot be read)."""
        ...

    def name(self, i: int) -> str:
        """Where sample `i` lives, for messages (a file, or a shard and its member)."""
        ...


class PackedStrings:
    """Strings in one byte buffer plus offsets: constant memory per string, fork-friendly."""

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")


class ImageIndex:
    """The images of one split folder: relative paths, labels (int64) and class names."""

    def __init__(self, root: Path, classes: list[str], files: Sequence[str], labels: Sequence[int] | np.ndarray, from_cache: bool = False) -> None:
        self.root = root
        self.classes = classes
        self.paths = PackedStrings(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.from_cache = from_cache

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> Path:
        return self.root / self.paths[i]

    def name(self, i: int) -> str:
        return str(self.path(i))

    def read(self, i: int) -> bytes:
        with open(self.path(i), "rb") as f:
            return f.read()


class Subset:
    """Rows `rows` of encoded images as encoded images of their own: a seeded subset of a
    split (`data.subset`), or the fixed subset evaluated during training. Sample i of the
    subset is sample `rows[i]` of `images`; labels and names follow."""

    def __init__(self, images: EncodedImages, rows: Sequence[int] | np.ndarray) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.ndim != 1 or (len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(images))):
            raise ValueError(f"rows must index the {len(images)} samples")
        self.classes = images.classes
        self.labels = np.ascontiguousarray(images.labels[self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, i: int) -> bytes:
        return self.images.read(int(self.rows[i]))

    def name(self, i: int) -> str:
        return self.images.name(int(self.rows[i]))


def default_cache_dir() -> Path:
    """`$CMP_CACHE/index`, else `~/.cache/cmp/index` (cmp's download cache, as the dataset plugins use)."""
    base = os.environ.get("CMP_CACHE", Path.home() / ".cache" / "cmp")
    return Path(base).expanduser() / "index"


def build_index(
    root: Path, split: str, classes: Sequence[str] | None = None,
    cache_dir: Path | None = None, use_cache: bool = True,
) -> ImageIndex:
    """The index of `root/split`, read from the cache when no class folder changed since.

    `classes`: the class folder names to keep, in label order (None: every sub-folder,
    sorted). Errors name the folder: a missing split, a split without class folders, a
    class asked for but absent, a class folder without images.
    """
    folder = Path(root).expanduser().resolve() / split
    if not folder.is_dir():
        raise DataError(f"no '{split}' folder (expected {folder}/<class>/<images>)", where=str(folder))
    names = _class_names(folder, classes)
    cache = (cache_dir or default_cache_dir()) / f"{_cache_key(folder, names)}.json" if use_cache else None
    if cache is not None:
        cached = _load(cache, folder, names)
        if cached is not None:
            return cached
    per_class: list[list[str]] = []
    stamp: dict[str, int] = {}
    for name in names:
        files = _scan(folder / name, stamp)
        if not files:
            raise DataError(f"class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", where=str(folder / name))
        per_class.append(files)
    if cache is not None:
        store_cache(cache, {"format": INDEX_FORMAT, "root": str(folder), "classes": names, "stamp": stamp, "files": per_class})
    return _from_lists(folder, names, per_class, from_cache=False)


def read_class_names(path: Path) -> list[str]:
    """Class folder names from a text file, in label order: the first word of each line
    (`#` starts a comment), as in recipes/imagenet100_classes.txt."""
    lines = [line.split("#", 1)[0].split() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    listed = [words[0] for words in lines if words]
    if not listed:
        raise DataError("lists no class names", where=str(path))
    return listed


def _class_names(folder: Path, classes: Sequence[str] | None) -> list[str]:
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if classes is None:
        if not found:
            raise DataError("holds no class folders (expected <class>/<images>)", where=str(folder))
        return found
    names = list(classes)
    if not names:
        raise DataError("the list of classes to keep is empty", where=str(folder))
    missing = sorted(set(names) - set(found))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"has no folder for class(es) {shown}", where=str(folder))
    if len(set(names)) != len(names):
        raise DataError("the list of classes to keep names a class twice", where=str(folder))
    return names


def _scan(class_folder: Path, stamp: dict[str, int]) -> list[str]:
    """Image files under one class folder, relative to it, sorted (sub-folders included);
    records each folder's modification time in `stamp` (a file added or removed changes it)."""
    files = []
    for here, dirs, names in os.walk(class_folder):
        dirs.sort()
        stamp[here] = os.stat(here).st_mtime_ns
        rel = os.path.relpath(here, class_folder)
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                files.append(name if rel == "." else os.path.join(rel, name))
    return files


def _unchanged(stamp: object) -> bool:
    """Whether every folder a cached index was scanned from still has its recorded time."""
    if not isinstance(stamp, dict):
        return False
    try:
        return all(os.stat(folder).st_mtime_ns == mtime for folder, mtime in stamp.items())
    except OSError:
        return False


def _cache_key(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256(json.dumps([str(folder), names]).encode()).hexdigest()[:20]
    return f"{folder.parent.name}-{folder.name}-{digest}"


def _load(cache: Path, folder: Path, names: list[str]) -> ImageIndex | None:
    """The cached index if it is of this folder, these classes and unchanged folders, else None."""
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("root") != str(folder)
        or data.get("classes") != names or not _unchanged(data.get("stamp"))
    ):
        return None
    return _from_lists(folder, names, data["files"], from_cache=True)


def store_cache(cache: Path, data: dict[str, object]) -> None:
    """A cache file, written whole or not at all (several processes may build one index at once)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temporary, cache)
    except OSError:
        pass  # a read-only cache costs a rescan next time, nothing else


def _from_lists(folder: Path, names: list[str], per_class: list[list[str]], from_cache: bool) -> ImageIndex:
    files = [os.path.join(name, f) for name, listed in zip(names, per_class) for f in listed]
    labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(listed) for listed in per_class])
    return ImageIndex(folder, names, files, labels, from_cache=from_cache)
