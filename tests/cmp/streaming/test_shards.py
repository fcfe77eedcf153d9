"""WebDataset tar shards: the same samples as the folder they were written from; bad shards named."""

from __future__ import annotations

import io
import os
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


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_read_shards_stay_open_once_each_and_the_least_recent_is_closed_first(
    index: ImageIndex, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cmp.streaming import shards as shards_module

    write_shards(index, tmp_path / "shards", per_shard=10)  # 5 shards of samples 0-9, 10-19, ...
    shards = open_shards(tmp_path / "shards", cache_dir=cache)
    before = open_descriptors()
    for _ in range(20):
        assert shards.read(3) == index.read(3)
    assert open_descriptors() == before + 1  # one descriptor for shard 0, however often it is read
    monkeypatch.setattr(shards_module, "OPEN_SHARDS", 2)
    for i in (12, 3, 25):  # shards 1, 0 (now the most recent), then 2: shard 1 is closed
        assert shards.read(i) == index.read(i)
    assert list(shards._files) == [0, 2] and open_descriptors() == before + 2


def test_a_shard_cut_short_after_indexing_is_an_os_error_saying_how_much_is_left(index: ImageIndex, tmp_path: Path, cache: Path) -> None:
    (only,) = write_shards(index, tmp_path / "shards", per_shard=100)
    shards = open_shards(tmp_path / "shards", cache_dir=cache)
    last = len(shards) - 1
    end = int(shards.offsets[last]) + 10
    with open(only, "r+b") as file:
        file.truncate(end)
    with pytest.raises(OSError, match=rf"^shard ends after 10 of the member's {int(shards.sizes[last])} bytes$"):
        shards.read(last)


def test_classes_are_numbered_without_a_classes_file_and_labels_must_lie_in_its_range(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()

    def write(*labels: str) -> None:
        with tarfile.open(folder / "s.tar", "w") as tar:
            for k, label in enumerate(labels):
                add(tar, f"{k}.jpg", b"\xff\xd8 not decoded here")
                add(tar, f"{k}.cls", label.encode())

    write("0", "2", "2")
    numbered = open_shards(folder, use_cache=False)
    assert numbered.classes == ["0", "1", "2"] and numbered.labels.tolist() == [0, 2, 2]
    (folder / "classes.txt").write_text("cat\n\ndog\n", encoding="utf-8")
    for labels, found in ((("0", "2"), "0..2"), (("-1", "1"), "-1..1")):
        write(*labels)
        with pytest.raises(DataError, match=rf": labels must lie in \[0, 2\), found {found}$") as bad:
            open_shards(folder, use_cache=False)
        assert bad.value.where == str(folder.resolve())
    write("1", "0")
    assert open_shards(folder, use_cache=False).classes == ["cat", "dog"]
