"""Data sets that stay encoded on disk: a class-per-folder image tree, and WebDataset shards.

Both return `StreamedData` (`cmp.api.contracts`): the engine decodes training batches in
worker processes, each image cropped at full resolution (`crop_scale`, `crop_ratio`) and
resized to `size`, and streams the evaluation input (the central `eval_fraction` of the
shorter side, resized to `size`) batch by batch, so memory does not grow with the data
set. ImageNet-100 is `image_tree` with `classes` the file of its 100 class ids
(`recipes/imagenet100_classes.txt`).

`statistics`: the normalisation's per-channel mean and std. `imagenet` is ImageNet's (for
one channel, the mean of its three); `estimate` measures them on the evaluation crops of
a fixed sample of 256 training images; `auto` is `imagenet` for colour, `estimate` for
grey.

`decode_on`: `workers` (default) decodes every image in the worker processes; `device`
leaves the JPEGs to be decoded in batches on the model's device (nvJPEG on a GPU), the
workers only reading bytes and choosing the crop boxes: the same crops, fewer CPU cores
needed. Not measured on a GPU yet, hence not the default.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

from cmp import hookimpl
from cmp.api import DataError
from cmp.api.contracts import IMAGENET_MEAN, IMAGENET_STD, StreamedData
from cmp.api.hookspecs import Register
from cmp.api.params import Fraction, FractionRange, NonNegativeInt, PositiveInt, PositiveRange, Probability

if TYPE_CHECKING:
    from cmp.streaming import EncodedImages

REPOSITORY = Path(__file__).resolve().parents[1]
"""Where a relative `classes` file is also looked for (the checkout holding `recipes/`)."""

Statistics = Literal["auto", "imagenet", "estimate"]
DecodeOn = Literal["workers", "device"]
ShardSpec = Union[str, list[str]]


def root_hint(root: str) -> str:
    """What a missing `data.root` of an image tree should hold, and for the example data's
    folder the command that writes it (cmp.config.cells adds this to its message)."""
    from cmp.streaming.generate import DEFAULT_OUT

    text = "; it must hold train/<class>/ and val/<class>/ folders of images"
    if Path(root).expanduser().resolve() == DEFAULT_OUT.resolve():
        text += f": write the example data there with `python -m cmp.streaming.generate {root}`"
    return text


def default_workers() -> int:
    """Decoding workers when the recipe does not say: one core less than this process may use, 1 to 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


def class_list(classes: list[str] | str | None, root: Path | None) -> list[str] | None:
    """The class folder names to keep, in label order: a list, or a text file of one per line
    (`#` starts a comment; the first word of a line is the name). A relative file is looked
    for from the working directory, then `data.root`, then cmp's checkout."""
    if classes is None or isinstance(classes, list):
        return classes
    given = Path(classes).expanduser()
    places = [given] if given.is_absolute() else [given, *([root / given] if root else []), REPOSITORY / given]
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        raise DataError(f"no such file of class names (looked for {', '.join(str(p) for p in places)})",
                        where="data.params.classes")
    from cmp.streaming import read_class_names

    return read_class_names(found)


def statistics_of(images: EncodedImages, statistics: Statistics, channels: int, size: int,
                  fraction: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel, as `statistics` says (see the module's notes)."""
    if statistics == "estimate" or (statistics == "auto" and channels == 1):
        from cmp.streaming import estimate_statistics

        return estimate_statistics(images, channels=channels, size=size, fraction=fraction)
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)


def _streamed(
    name: str, train: EncodedImages, test: EncodedImages, *, size: int, channels: int,
    crop_scale: tuple[float, float], crop_ratio: tuple[float, float], eval_fraction: float,
    num_workers: int | None, max_corrupt: float, statistics: Statistics, decode_on: DecodeOn,
) -> StreamedData:
    mean, std = statistics_of(train, statistics, channels, size, eval_fraction)
    return StreamedData(
        name, train, test, list(train.classes), channels, size, mean, std,
        crop_scale=tuple(crop_scale), crop_ratio=tuple(crop_ratio), eval_fraction=eval_fraction,  # type: ignore[arg-type]  # validated as two-element ranges by the parameter schema
        num_workers=default_workers() if num_workers is None else num_workers, max_corrupt=max_corrupt,
        decode_on=decode_on,
    )


def image_tree(
    root: Path | None, download: bool, split_seed: int, *,
    size: PositiveInt = 224, channels: Literal[1, 3] = 3, classes: list[str] | str | None = None,
    train_split: str = "train", val_split: str = "val",
    crop_scale: FractionRange = (0.08, 1.0), crop_ratio: PositiveRange = (3 / 4, 4 / 3),
    eval_fraction: Fraction = 0.875, num_workers: NonNegativeInt | None = None,
    max_corrupt: Probability = 0.01, statistics: Statistics = "auto", decode_on: DecodeOn = "workers",
) -> StreamedData:
    """An ImageNet-style tree, streamed: root/train/<class>/*.jpg and root/val/<class>/*.jpg.

    `classes`: the class folders to use, in label order (a list, or a text file of ids such
    as recipes/imagenet100_classes.txt); default every folder of the training split. The
    listing of each split is cached (`$CMP_CACHE/index`). `num_workers` decoding processes
    (default: the cores less one, at most 8).
    """
    from cmp.streaming import build_index

    if root is None:
        raise DataError("image_tree needs data.root: a folder holding train/<class>/ and val/<class>/", where="data.root")
    if not root.is_dir():
        raise DataError("no such folder" + root_hint(str(root)), where=f"data.root {root}")
    names = class_list(classes, root)
    train = build_index(root, train_split, names)
    test = build_index(root, val_split, train.classes)
    return _streamed(
        "image_tree", train, test, size=size, channels=channels, crop_scale=crop_scale, crop_ratio=crop_ratio,
        eval_fraction=eval_fraction, num_workers=num_workers, max_corrupt=max_corrupt, statistics=statistics,
        decode_on=decode_on,
    )


_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def shard_paths(spec: ShardSpec, root: Path | None) -> Path | list[Path]:
    """A folder of `*.tar`, or the shards a glob or WebDataset brace range names
    (`train-{000000..000146}.tar`), or a list of either; relative to `data.root` when set."""
    def absolute(text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() or root is None else root / path

    def expand(text: str) -> list[str]:
        match = _BRACES.search(text)
        if match is None:
            return [text]
        first, last = match.group(1), match.group(2)
        width = len(first)
        return [e for n in range(int(first), int(last) + 1)
                for e in expand(text[: match.start()] + f"{n:0{width}d}" + text[match.end():])]

    specs = [spec] if isinstance(spec, str) else list(spec)
    if len(specs) == 1 and not _BRACES.search(specs[0]) and not glob.has_magic(specs[0]):
        return absolute(specs[0])
    shards: list[Path] = []
    for text in specs:
        for one in expand(text):
            path = absolute(one)
            if glob.has_magic(str(path)):
                matched = sorted(Path(p) for p in glob.glob(str(path)))
                if not matched:
                    raise DataError("matches no shard", where=str(path))
                shards += matched
            else:
                shards.append(path)
    return shards


def image_shards(
    root: Path | None, download: bool, split_seed: int, *,
    train: ShardSpec = "train", val: ShardSpec = "val",
    size: PositiveInt = 224, channels: Literal[1, 3] = 3,
    crop_scale: FractionRange = (0.08, 1.0), crop_ratio: PositiveRange = (3 / 4, 4 / 3),
    eval_fraction: Fraction = 0.875, num_workers: NonNegativeInt | None = None,
    max_corrupt: Probability = 0.01, statistics: Statistics = "auto", decode_on: DecodeOn = "workers",
) -> StreamedData:
    """WebDataset tar shards (key.jpg + key.cls), streamed by random access.

    `train` / `val`: a folder of *.tar, a glob, a brace range (shard-{000000..000099}.tar)
    or a list of them, relative to data.root when it is set. Class names come from
    `classes.txt` beside the training shards (else "0", "1", ...). The byte offsets of
    the samples are indexed once per shard and cached.
    """
    from cmp.streaming import open_shards

    train_set = open_shards(shard_paths(train, root))
    test_set = open_shards(shard_paths(val, root))
    if test_set.labels.max() >= len(train_set.classes):
        raise DataError(f"validation labels reach {int(test_set.labels.max())}, but the training shards name "
                        f"{len(train_set.classes)} classes", where="data.params.val")
    unnamed = [str(k) for k in range(len(test_set.classes))]  # no classes.txt beside the validation shards
    if test_set.classes != unnamed and test_set.classes != train_set.classes:
        raise DataError("the validation shards' classes.txt differs from the training shards'", where="data.params.val")
    return _streamed(
        "image_shards", train_set, test_set, size=size, channels=channels, crop_scale=crop_scale,
        crop_ratio=crop_ratio, eval_fraction=eval_fraction, num_workers=num_workers, max_corrupt=max_corrupt,
        statistics=statistics, decode_on=decode_on,
    )


@hookimpl
def cmp_register_datasets(register: Register) -> None:
    register("image_tree", image_tree, root_hint=root_hint)
    register("image_shards", image_shards)
