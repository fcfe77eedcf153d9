"""Images in WebDataset tar shards (`shard-000000.tar` holding `key.jpg` + `key.cls`), read by index.

Training draws samples in the order of a permutation of the whole data set (so an epoch
resumes exactly and each process reads its rows of every global batch), which needs
random access. WebDataset's reader only streams a shard from its start; tar stores each
member's bytes contiguously, so one pass with Python's `tarfile` records where every
image lies (shard, byte offset, size) and a sample is then one `pread`. That pass is
cached like a folder index. Members follow WebDataset's grouping: a sample's key is the
member's path up to the first dot of its file name, its image the member whose last
suffix is an image's (`key.jpg`, `key.input.jpg`), its label the integer text of `key.cls`. `classes.txt` beside the shards, one
name per line, names the classes; without it they are called "0", "1", ...

`python -m cmp.streaming.to_shards ROOT OUT` copies an image tree's splits into shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmp.errors import DataError
from cmp.streaming.index import IMAGE_SUFFIXES, EncodedImages, PackedStrings, default_cache_dir, store_cache

INDEX_FORMAT = 1
OPEN_SHARDS = 64
"""Shard files a process keeps open at once."""
_IMAGE_EXTENSIONS = frozenset(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)


class ShardIndex:
    """Where each sample's image lies in a set of tar shards, with its label."""

    def __init__(
        self, shards: list[Path], classes: list[str], shard_of: np.ndarray, offsets: np.ndarray,
        sizes: np.ndarray, keys: Sequence[str], labels: np.ndarray, from_cache: bool = False,
    ) -> None:
        self.shards = shards
        self.classes = classes
        self.shard_of = shard_of
        self.offsets = offsets
        self.sizes = sizes
        self.keys = PackedStrings(keys)
        self.labels = labels
        self.from_cache = from_cache
        self._files: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        return f"{self.shards[int(self.shard_of[i])]}:{self.keys[i]}"

    def read(self, i: int) -> bytes:
        shard = int(self.shard_of[i])
        size = int(self.sizes[i])
        data = os.pread(self._descriptor(shard), size, int(self.offsets[i]))
        if len(data) != size:
            raise OSError(f"shard ends after {len(data)} of the member's {size} bytes")
        return data

    def _descriptor(self, shard: int) -> int:
        """An open file of the shard, per process (a forked worker opens its own); the
        `OPEN_SHARDS` most recently read stay open (ImageNet is a thousand shards)."""
        if self._pid != os.getpid():
            self._files, self._pid = OrderedDict(), os.getpid()
        if shard in self._files:
            self._files.move_to_end(shard)
        else:
            if len(self._files) >= OPEN_SHARDS:
                os.close(self._files.popitem(last=False)[1])
            self._files[shard] = os.open(self.shards[shard], os.O_RDONLY)
        return self._files[shard]

    def __getstate__(self) -> dict[str, object]:
        """Pickled (to a spawned worker) without this process's open files."""
        return {**self.__dict__, "_files": OrderedDict()}


def open_shards(
    location: Path | Sequence[Path], cache_dir: Path | None = None, use_cache: bool = True,
) -> ShardIndex:
    """The index of the `*.tar` shards in a folder (or of the shards listed), cached.

    An unreadable shard, a sample without an image or without a label, is a `DataError`
    naming the shard.
    """
    if isinstance(location, (str, Path)):
        folder = Path(location).expanduser().resolve()
        if not folder.is_dir():
            raise DataError("no such folder of tar shards", where=str(folder))
        shards = sorted(folder.glob("*.tar"))
        if not shards:
            raise DataError("holds no tar shards (*.tar)", where=str(folder))
    else:
        shards = [Path(s).expanduser().resolve() for s in location]
        if not shards:
            raise DataError("the list of shards is empty", where="shards")
        folder = shards[0].parent
    for shard in shards:
        if not shard.is_file():
            raise DataError("no such shard", where=str(shard))
    stamp = {str(s): [s.stat().st_size, s.stat().st_mtime_ns] for s in shards}
    names_file = folder / "classes.txt"
    cache = None
    if use_cache:
        digest = hashlib.sha256(json.dumps(sorted(stamp)).encode()).hexdigest()[:20]
        cache = (cache_dir or default_cache_dir()) / f"shards-{folder.name}-{digest}.json"
        cached = _load(cache, shards, stamp)
        if cached is not None:
            return _assemble(shards, cached, names_file, from_cache=True)
    listed = [_scan_shard(shard) for shard in shards]
    if cache is not None:
        store_cache(cache, {"format": INDEX_FORMAT, "stamp": stamp, "shards": listed})
    return _assemble(shards, listed, names_file, from_cache=False)


Listing = list[list[object]]
"""One shard's samples: [key, byte offset, size, label] each."""


def _scan_shard(shard: Path) -> Listing:
    """Every sample of one shard, in member order."""
    samples: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                directory, _, base = member.name.rpartition("/")
                stem, dot, extension = base.partition(".")
                if not dot or not stem:  # no suffix, or a hidden file (macOS's ._name)
                    continue
                key = f"{directory}/{stem}" if directory else stem
                sample = samples.setdefault(key, {})
                extension = extension.lower()
                if extension == "cls":
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8").strip() if handle is not None else ""
                    try:
                        sample["label"] = int(text)
                    except ValueError:
                        raise DataError(f"{key}.cls holds {text[:20]!r}, not an integer label", where=str(shard)) from None
                elif extension.rpartition(".")[2] in _IMAGE_EXTENSIONS:  # `jpg`, or `input.jpg` as WebDataset allows
                    sample["image"] = (member.offset_data, member.size)
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the tar shard: {type(exc).__name__}: {exc}", where=str(shard)) from None
    listing: Listing = []
    for key, sample in samples.items():  # a member cut short is tarfile's ReadError above
        if "image" not in sample:
            raise DataError(f"sample '{key}' has no image ({', '.join(sorted(_IMAGE_EXTENSIONS))})", where=str(shard))
        if "label" not in sample:
            raise DataError(f"sample '{key}' has no label ({key}.cls)", where=str(shard))
        offset, size = sample["image"]
        listing.append([key, offset, size, sample["label"]])
    if not listing:
        raise DataError("holds no samples (key.jpg + key.cls)", where=str(shard))
    return listing


def _load(cache: Path, shards: list[Path], stamp: dict[str, list[int]]) -> list[Listing] | None:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("stamp") != stamp:
        return None
    listed = data.get("shards")
    return listed if isinstance(listed, list) and len(listed) == len(shards) else None


def _assemble(shards: list[Path], listed: list[Listing], names_file: Path, from_cache: bool) -> ShardIndex:
    rows = [row for listing in listed for row in listing]
    labels = np.array([row[3] for row in rows], dtype=np.int64)
    if names_file.is_file():
        classes = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        classes = [str(k) for k in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(f"labels must lie in [0, {len(classes)}), found {labels.min()}..{labels.max()}", where=str(names_file.parent))
    return ShardIndex(
        shards, classes,
        shard_of=np.repeat(np.arange(len(shards), dtype=np.int32), [len(listing) for listing in listed]),
        offsets=np.array([row[1] for row in rows], dtype=np.int64),
        sizes=np.array([row[2] for row in rows], dtype=np.int64),
        keys=[str(row[0]) for row in rows], labels=labels, from_cache=from_cache,
    )


def write_shards(images: EncodedImages, out: Path, per_shard: int = 1000) -> list[Path]:
    """Copy encoded images into WebDataset shards `out/shard-NNNNNN.tar` (+ `classes.txt`).

    Bytes are copied as they are (no re-encoding); sample i gets key `%08d` % i, and its
    image keeps its file's suffix.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for first in range(0, len(images), per_shard):
        path = out / f"shard-{first // per_shard:06d}.tar"
        with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(first, min(len(images), first + per_shard)):
                suffix = Path(images.name(i)).suffix.lower().lstrip(".") or "jpg"
                for extension, payload in ((suffix, images.read(i)), ("cls", str(int(images.labels[i])).encode())):
                    info = tarfile.TarInfo(f"{i:08d}.{extension}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        paths.append(path)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in images.classes), encoding="utf-8")
    return paths
