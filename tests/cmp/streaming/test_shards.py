"""WebDataset tar shards: the same samples as the folder they were written from; bad shards named."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from cmp.errors import DataError
from cmp.streaming import ImageIndex, StreamingSource, build_index, open_shards, write_shards


@pytest.fixture
def index(tree: Path, cache: Path) -> ImageIndex:
    return build_index(tree, "train", cache_dir=cache)


@pytest.mark.filterwarnings("ignore::cmp.streaming.CorruptImageWarning")
def test_shards_hold_the_folders_samples_and_stream_the_same_batches(index: ImageIndex, tmp_path: Path, cache: Path) -> None:
    written = write_shards(index, tmp_path / "shards", per_shard=10)
    assert [p.name for p in written] == [f"shard-00000{k}.tar" for k in range(5)]
    with tarfile.open(written[0]) as tar:
        assert tar.getnames()[:4] == ["00000000.jpg", "00000000.cls", "00000001.jpg", "00000001.cls"]
    shards = open_shards(tmp_path / "shards", cache_dir=cache)
    assert not shards.from_cache and len(shards) == len(index) == 41
    assert shards.classes == index.classes and shards.labels.tolist() == index.labels.tolist()
    assert all(shards.read(i) == index.read(i) for i in range(len(index)))
    assert shards.name(12).endswith("shard-000001.tar:00000012")
    assert open_shards(sorted((tmp_path / "shards").glob("*.tar")), cache_dir=cache).from_cache

    order = torch.randperm(41, generator=torch.Generator().manual_seed(0))
    options = {"batch_size": 8, "size": 16, "num_workers": 0, "max_corrupt": 0.1}
    from_folder = list(StreamingSource(index, **options).epoch(1, order))  # type: ignore[arg-type]
    with StreamingSource(shards, **{**options, "num_workers": 2}) as streamed:  # type: ignore[arg-type]
        from_shards = list(streamed.epoch(1, order))
    for a, b in zip(from_folder, from_shards, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.ids, b.ids) and torch.equal(a.labels, b.labels)


def add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_unreadable_or_incomplete_shards_are_errors_naming_the_shard(index: ImageIndex, tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "shards"
    good, last = write_shards(index, folder, per_shard=30)
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="cannot read the tar shard") as truncated:
        open_shards(folder, cache_dir=cache)
    assert truncated.value.where == str(last)

    last.write_bytes(b"\x00not a tar" * 1000)
    with pytest.raises(DataError, match="cannot read the tar shard|holds no samples") as garbage:
        open_shards(folder, cache_dir=cache)
    assert garbage.value.where == str(last)

    with tarfile.open(last, "w") as tar:
        add(tar, "a.jpg", index.read(0))
    with pytest.raises(DataError, match=r"'a' has no label \(a.cls\)") as unlabelled:
        open_shards(folder, cache_dir=cache)
    assert unlabelled.value.where == str(last)

    with tarfile.open(last, "w") as tar:
        add(tar, "a.jpg", index.read(0))
        add(tar, "a.cls", b"cat")
    with pytest.raises(DataError, match="not an integer label"):
        open_shards(folder, cache_dir=cache)

    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(DataError, match="no tar shards") as none:
        open_shards(empty, cache_dir=cache)
    assert none.value.where == str(empty.resolve())
    assert good.is_file()
