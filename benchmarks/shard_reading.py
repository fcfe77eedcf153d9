"""Reading tar shards: cmp's index (one `pread` per sample) against WebDataset's reader.

cmp reads WebDataset shards through an index of where each image lies
(`cmp.streaming.open_shards`), so that an epoch can follow a permutation of the whole
data set: it resumes mid-epoch with the same samples, and each process of a distributed
run reads its own rows of every global batch. WebDataset's reader streams each shard from
its start instead (a shuffle buffer mixes samples locally). This measures what that choice
costs: every sample's bytes read once

- by `webdataset.WebDataset` in shard order (its fastest way),
- by cmp's index in shard order, and in a random permutation (what training does),

after building the index once (a pass over the tar headers, then cached). The JPEGs are
generated (200-500 px, as `benchmarks.streaming_throughput` makes them) and copied into
shards of 1 000 by `cmp.streaming.write_shards`. The files are in the page cache when
read (just written): this compares the readers' own costs, not a disk's.

    python -m benchmarks.shard_reading --images 5000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.machine import describe_machine
from benchmarks.streaming_throughput import write_images
from cmp.streaming import build_index, open_shards, write_shards


def timed(read: Callable[[], tuple[int, int]]) -> tuple[float, tuple[int, int]]:
    """Seconds a reader took, and what it read: (samples, bytes)."""
    started = time.perf_counter()
    count = read()
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="JPEGs to generate (default 5000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each reader, alternating (median reported)")
    args = parser.parse_args()
    import webdataset

    with tempfile.TemporaryDirectory(prefix="cmp-shards-") as temporary:
        root = Path(temporary)
        write_images(root / "tree", args.images)
        paths = write_shards(build_index(root / "tree", "train", use_cache=False), root / "shards")
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        print(describe_machine())
        print(f"{args.images} JPEGs (200-500 px) in {len(paths)} shard{'s' * (len(paths) != 1)}, {megabytes:.1f} MiB; {args.rounds} rounds each")

        started = time.perf_counter()
        open_shards(root / "shards", cache_dir=root / "cache")
        scan = time.perf_counter() - started
        started = time.perf_counter()
        index = open_shards(root / "shards", cache_dir=root / "cache")
        cached = time.perf_counter() - started
        order = np.random.default_rng(0).permutation(len(index))
        urls = [str(p) for p in paths]

        def with_webdataset() -> tuple[int, int]:
            sizes = [len(next(v for k, v in sample.items() if k.endswith("jpg")))
                     for sample in webdataset.WebDataset(urls, shardshuffle=False, empty_check=False)]
            return len(sizes), sum(sizes)

        def in_shard_order() -> tuple[int, int]:
            sizes = [len(index.read(i)) for i in range(len(index))]
            return len(sizes), sum(sizes)

        def in_permutation() -> tuple[int, int]:
            sizes = [len(index.read(int(i))) for i in order]
            return len(sizes), sum(sizes)

        readers = {"webdataset.WebDataset, shard order": with_webdataset,
                   "cmp index, shard order": in_shard_order,
                   "cmp index, random permutation (training)": in_permutation}
        expected = {read() for read in readers.values()}  # warm-up: imports, open files
        assert len(expected) == 1, f"the readers read different samples: {expected}"
        seconds: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, read in readers.items():
                elapsed, count = timed(read)
                seconds[name].append(elapsed)
                assert {count} == expected

    print(f"\nindex: first pass over the tar headers {scan * 1000:.0f} ms, opened from its cache {cached * 1000:.1f} ms\n")
    print("| reader | samples/s | median epoch | rounds |\n|---|---:|---:|---|")
    for name, times in seconds.items():
        median = statistics.median(times)
        rounds = ", ".join(f"{t * 1000:.0f}" for t in times)
        print(f"| {name} | {args.images / median:,.0f} | {median * 1000:.0f} ms | {rounds} ms |")


if __name__ == "__main__":
    main()
