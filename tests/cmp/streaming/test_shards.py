"""WebDataset tar shards: the same samples as the folder they were written from; bad shards named."""

from __future__ import annotations

import functools
import io
import os
import tarfile
from pathlib import Path

import numpy as np
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


def tar_of(path: Path, members: list[tuple[str, bytes | None]], compress: str = "") -> Path:
    """A tar at `path` of (name, payload) members, payload None for a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, f"w:{compress}", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members:
            if payload is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                add(tar, name, payload)
    return path


def test_members_are_grouped_by_webdataset_keys(tmp_path: Path) -> None:
    """A key is the member's path up to the first dot of its file name; directories, files
    without a suffix and macOS's `._` files are no samples."""
    shard = tar_of(tmp_path / "s" / "s.tar", [
        ("README", b"about"), ("d.1", None), ("._a.jpg", b"resource fork"),
        ("d.1/a.input.jpg", b"first"), ("d.1/a.cls", b"0"),
        ("d.2/a.jpg", b"second"), ("d.2/a.cls", b" 1\n"),
        ("b.JPG", b"third"), ("b.cls", b"1"),
    ])
    shards = open_shards(shard.parent, use_cache=False)
    assert [shards.keys[i] for i in range(len(shards))] == ["d.1/a", "d.2/a", "b"]
    assert [shards.read(i) for i in range(3)] == [b"first", b"second", b"third"]
    assert shards.labels.tolist() == [0, 1, 1] and shards.from_cache is False


def error_of(call: object) -> DataError:
    with pytest.raises(DataError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_every_bad_shard_set_is_one_error_naming_the_folder_or_shard(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert (error_of(lambda: open_shards(missing)).message, error_of(lambda: open_shards(missing)).where) == (
        "no such folder of tar shards", str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error_of(lambda: open_shards(empty)).message == "holds no tar shards (*.tar)"
    no_list = error_of(lambda: open_shards([]))
    assert (no_list.message, no_list.where) == ("the list of shards is empty", "shards")
    absent = error_of(lambda: open_shards([tmp_path / "x.tar"], use_cache=False))
    assert (absent.message, absent.where) == ("no such shard", str(tmp_path / "x.tar"))

    for members, message in (
        ([("a.jpg", b"x"), ("a.cls", b"a label far longer than twenty")], "a.cls holds 'a label far longer t', not an integer label"),
        ([("a.cls", b"0")], "sample 'a' has no image (bmp, jpeg, jpg, png, webp)"),
    ):
        shard = tar_of(tmp_path / "bad" / "s.tar", members)
        error = error_of(functools.partial(open_shards, shard.parent, use_cache=False))
        assert (error.message, error.where) == (message, str(shard.resolve()))

    gzipped = tar_of(tmp_path / "gz" / "s.tar", [("a.jpg", b"x"), ("a.cls", b"0")], compress="gz")
    error = error_of(lambda: open_shards(gzipped.parent, use_cache=False))  # offsets into a compressed stream mean nothing
    assert error.message.startswith("cannot read the tar shard: ReadError: ") and error.where == str(gzipped.resolve())

    cut = tar_of(tmp_path / "cut" / "s.tar", [("a.cls", b"0"), ("a.jpg", b"x" * 3000)])
    cut.write_bytes(cut.read_bytes()[: 1024 + 2999])  # the last image one byte short: tarfile notices
    assert error_of(lambda: open_shards(cut.parent, use_cache=False)).message == (
        "cannot read the tar shard: ReadError: unexpected end of data")


def test_listed_shards_take_classes_from_the_first_ones_folder_and_any_changed_shard_is_read_again(
    index: ImageIndex, tmp_path: Path, cache: Path,
) -> None:
    first = write_shards(index, tmp_path / "one", per_shard=30)[0]
    second = tar_of(tmp_path / "two" / "s.tar", [("z.jpg", index.read(40)), ("z.cls", b"2")])
    listed = open_shards([first, second], cache_dir=cache)
    assert listed.classes == list(index.classes) and len(listed) == 31
    assert open_shards([first, second], cache_dir=cache).from_cache is True
    tar_of(first, [("y.jpg", index.read(0)), ("y.cls", b"0")])  # the first shard rewritten
    again = open_shards([first, second], cache_dir=cache)
    assert again.from_cache is False and len(again) == 2


class Named:
    """Encoded images with the given names (suffixes) and tiny payloads, for write_shards."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.classes = ["café", "thé"]
        self.labels = np.array([k % 2 for k in range(len(names))])

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> bytes:
        return f"image {i}".encode()

    def name(self, i: int) -> str:
        return self.names[i]


def test_written_shards_keep_suffixes_default_to_a_thousand_samples_and_name_the_classes(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er"
    paths = write_shards(Named([f"x/{k}.png" if k == 1 else f"x/{k}" for k in range(1001)]), out)  # type: ignore[arg-type]
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar"]
    with tarfile.open(paths[0]) as tar:
        assert tar.getnames()[:4] == ["00000000.jpg", "00000000.cls", "00000001.png", "00000001.cls"]
    assert (out / "classes.txt").read_bytes() == "café\nthé\n".encode("utf-8")
    write_shards(Named(["a.jpg"]), out)  # type: ignore[arg-type]  # into a folder that exists
    assert open_shards(out, use_cache=False).classes == ["café", "thé"]


def test_a_cache_file_that_is_not_this_shard_sets_index_is_ignored(tmp_path: Path, cache: Path) -> None:
    import json

    shard = tar_of(tmp_path / "s" / "s.tar", [("a.jpg", b"x"), ("a.cls", b"0"), ("b.jpg", b"y"), ("b.cls", b"1")])
    assert open_shards(shard.parent, cache_dir=cache).from_cache is False
    (stored,) = cache.glob("shards-*.json")
    good = json.loads(stored.read_text(encoding="utf-8"))
    for tampered in ([good], {**good, "format": -1}, {**good, "stamp": {}}, {**good, "shards": good["shards"] * 2},
                     {**good, "shards": "?"}):
        stored.write_text(json.dumps(tampered), encoding="utf-8")
        again = open_shards(shard.parent, cache_dir=cache)
        assert again.from_cache is False and len(again) == 2, tampered
    assert open_shards(shard.parent, cache_dir=cache).from_cache is True  # rewritten by the last scan


def test_a_shard_without_samples_says_what_a_sample_is(tmp_path: Path) -> None:
    shard = tar_of(tmp_path / "s" / "s.tar", [("README", b"nothing here")])
    error = error_of(functools.partial(open_shards, shard.parent, use_cache=False))
    assert (error.message, error.where) == ("holds no samples (key.jpg + key.cls)", str(shard.resolve()))


def test_shards_written_by_webdataset_are_read_as_written(index: ImageIndex, tmp_path: Path, cache: Path) -> None:
    """WebDataset's own writer is the reference for the layout: its shards give back every
    sample's bytes and label in the order written."""
    import webdataset

    folder = tmp_path / "written-by-webdataset"
    folder.mkdir()
    with webdataset.ShardWriter(str(folder / "part-%04d.tar"), maxcount=15, verbose=0) as sink:
        for i in range(len(index)):
            suffix = Path(index.name(i)).suffix.lstrip(".")
            sink.write({"__key__": f"sample{i:04d}", suffix: index.read(i), "cls": int(index.labels[i])})
    shards = open_shards(folder, cache_dir=cache)
    assert len(sorted(folder.glob("*.tar"))) == -(-len(index) // 15) and len(shards) == len(index)
    assert [shards.read(i) for i in range(len(index))] == [index.read(i) for i in range(len(index))]
    assert torch.equal(torch.as_tensor(shards.labels), torch.as_tensor(index.labels))
    assert shards.classes == [str(c) for c in range(len(index.classes))]  # no classes.txt: numbered


def test_webdatasets_reader_reads_the_shards_cmp_writes(index: ImageIndex, tmp_path: Path) -> None:
    import webdataset

    paths = write_shards(index, tmp_path / "shards", per_shard=16)
    samples = list(webdataset.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(len(index))]
    images = [next(v for k, v in s.items() if not k.startswith("__") and k != "cls") for s in samples]
    assert images == [index.read(i) for i in range(len(index))]
    assert [int(s["cls"]) for s in samples] == [int(label) for label in index.labels]
