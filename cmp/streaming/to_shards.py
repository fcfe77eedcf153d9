"""`python -m cmp.streaming.to_shards ROOT OUT`: an image tree's splits copied into WebDataset tar shards.

ROOT/<split>/<class>/<images> becomes OUT/<split>/shard-NNNNNN.tar (key.<suffix> +
key.cls per image, the bytes as they are) with classes.txt, which `image_shards` reads;
`--classes` keeps the classes of a file such as recipes/imagenet100_classes.txt. A split
folder that already holds shards is refused (stale shards would be read with the new).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cmp.errors import DataError
from cmp.streaming.index import build_index, read_class_names
from cmp.streaming.shards import write_shards


def main(argv: list[str] | None = None) -> int:
    """Copy ROOT/<split>/<class>/ images into OUT/<split>/ shards; 2 with one line on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m cmp.streaming.to_shards",
        description="Copy an image tree (ROOT/<split>/<class>/<images>) into WebDataset tar shards "
                    "OUT/<split>/shard-NNNNNN.tar with classes.txt; the images' bytes as they are.")
    parser.add_argument("root", type=Path, help="the tree's folder")
    parser.add_argument("out", type=Path, help="where each split's shards go")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to copy (default: train val)")
    parser.add_argument("--classes", type=Path,
                        help="a file of the class folders to keep, one per line, in label order "
                             "(e.g. recipes/imagenet100_classes.txt); default: every folder of the first split")
    parser.add_argument("--per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    args = parser.parse_args(argv)
    if args.per_shard < 1:
        parser.error("--per-shard must be at least 1")
    try:
        if args.classes is not None and not args.classes.is_file():
            raise DataError("no such file of class names", where=str(args.classes))
        for split in args.splits:  # stale shards of an earlier copy would be read with the new ones
            if any((args.out / split).glob("*.tar")):
                raise DataError("already holds tar shards: remove them or choose another folder", where=str(args.out / split))
        names = read_class_names(args.classes) if args.classes is not None else None
        first = build_index(args.root, args.splits[0], names, use_cache=False)
        splits = [first] + [build_index(args.root, split, first.classes, use_cache=False) for split in args.splits[1:]]
        for split, images in zip(args.splits, splits):
            written = write_shards(images, args.out / split, args.per_shard)
            print(f"{split}: {len(images)} images of {len(images.classes)} classes in {len(written)} "
                  f"shard{'s' * (len(written) != 1)} under {args.out / split}/")
    except (DataError, OSError) as exc:
        print(f"python -m cmp.streaming.to_shards: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
