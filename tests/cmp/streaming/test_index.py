"""The folder index: classes and files found, the cache reused while nothing changed, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cmp.errors import DataError
from cmp.streaming import build_index
from cmp.streaming import index as index_module
from tests.cmp.streaming.images import CLASSES, CORRUPT, write_jpegs


def test_finds_every_class_and_image_file(tree: Path, cache: Path) -> None:
    index = build_index(tree, "train", cache_dir=cache)
    assert index.classes == list(CLASSES)
    assert len(index) == 41
    names = [Path(index.name(i)) for i in range(len(index))]
    assert all(path.is_file() for path in names)
    assert [path.parent.name for path in names] == [index.classes[label] for label in index.labels]
    assert sorted(p.suffix for p in names if p.suffix != ".jpg") == [".png"]
    assert index.labels.dtype == np.int64 and np.bincount(index.labels).tolist() == [13, 14, 14]
    broken = names.index(tree / "train" / CORRUPT)
    assert index.read(broken) == (tree / "train" / CORRUPT).read_bytes()
    assert len(build_index(tree, "val", cache_dir=cache)) == 6


def test_a_second_start_reads_the_cache_and_a_changed_folder_is_scanned_again(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b"):
        write_jpegs(tmp_path / "train" / name, 3, seed=len(name), sizes=(20, 30))
    first = build_index(tmp_path, "train", cache_dir=cache)
    assert not first.from_cache and len(list(cache.glob("*.json"))) == 1

    def no_scan(folder: Path) -> list[str]:
        raise AssertionError(f"scanned {folder} again")

    with monkeypatch.context() as patch:
        patch.setattr(index_module, "_scan", no_scan)
        second = build_index(tmp_path, "train", cache_dir=cache)
    assert second.from_cache
    assert [second.name(i) for i in range(len(second))] == [first.name(i) for i in range(len(first))]
    assert second.labels.tolist() == first.labels.tolist()

    write_jpegs(tmp_path / "train" / "b" / "more", 1, seed=9, sizes=(20, 30))
    third = build_index(tmp_path, "train", cache_dir=cache)
    assert not third.from_cache and len(third) == 7
    assert third.name(6).endswith("b/more/img_000.jpg")

    write_jpegs(tmp_path / "train" / "b" / "more", 2, seed=9, sizes=(20, 30))  # inside a nested folder
    assert len(build_index(tmp_path, "train", cache_dir=cache)) == 8


def test_a_list_of_classes_restricts_the_split_and_sets_the_label_order(tree: Path, cache: Path) -> None:
    index = build_index(tree, "train", classes=["cat", "ant"], cache_dir=cache)
    assert index.classes == ["cat", "ant"] and len(index) == 27
    assert all(Path(index.name(i)).parent.name == index.classes[index.labels[i]] for i in range(len(index)))
    assert index.labels[0] == 0 and Path(index.name(0)).parent.name == "cat"


def test_bad_folders_are_errors_that_name_the_folder(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError, match="no 'train' folder") as missing:
        build_index(tmp_path, "train", cache_dir=cache)
    assert missing.value.where == str((tmp_path / "train").resolve())

    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders") as bare:
        build_index(tmp_path, "train", cache_dir=cache)
    assert bare.value.where == str((tmp_path / "train").resolve())

    write_jpegs(tmp_path / "train" / "full", 2, seed=0, sizes=(20, 30))
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="holds no images") as empty:
        build_index(tmp_path, "train", cache_dir=cache)
    assert empty.value.where == str((tmp_path / "train" / "empty").resolve())

    shutil.rmtree(tmp_path / "train" / "empty")
    with pytest.raises(DataError, match="no folder for class.*n01440764") as absent:
        build_index(tmp_path, "train", classes=["full", "n01440764"], cache_dir=cache)
    assert absent.value.where == str((tmp_path / "train").resolve())


def test_a_subset_is_its_rows_of_the_split_and_refuses_rows_outside_it(tree: Path, cache: Path) -> None:
    from cmp.streaming import Subset

    split = build_index(tree, "train", cache_dir=cache)
    part = Subset(split, [5, 0, 40])
    assert len(part) == 3 and part.classes == split.classes
    assert part.labels.tolist() == [split.labels[5], split.labels[0], split.labels[40]]
    assert part.name(2) == split.name(40) and part.read(1) == split.read(0)
    assert len(Subset(split, [])) == 0
    for rows in ([0, 41], [-1, 3], [[0, 1]]):
        with pytest.raises(ValueError, match="^rows must index the 41 samples$"):
            Subset(split, rows)


def test_the_index_cache_lives_under_cmp_cache_else_the_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cache"))
    assert index_module.default_cache_dir() == tmp_path / "cache" / "index"
    monkeypatch.delenv("CMP_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert index_module.default_cache_dir() == tmp_path / "home" / ".cache" / "cmp" / "index"


def test_a_cached_stamp_is_current_only_while_every_folder_keeps_its_time(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    stamp = {str(folder): folder.stat().st_mtime_ns}
    assert index_module._unchanged(stamp)
    assert not index_module._unchanged({str(folder): stamp[str(folder)] + 1})
    assert not index_module._unchanged({str(tmp_path / "gone"): 0})  # a folder removed since
    assert not index_module._unchanged([str(folder)])  # a cache file that is not ours


def test_every_bad_folder_or_class_list_is_one_exact_message(tmp_path: Path, cache: Path) -> None:
    def refusal(*args: object, **kwargs: object) -> tuple[str, str | None]:
        with pytest.raises(DataError) as info:
            build_index(*args, cache_dir=cache, **kwargs)  # type: ignore[arg-type]
        return info.value.message, info.value.where

    split = (tmp_path / "train").resolve()
    split.mkdir()
    assert refusal(tmp_path, "train") == ("holds no class folders (expected <class>/<images>)", str(split))
    (split / "a").mkdir()
    assert refusal(tmp_path, "train") == ("class folder holds no images (.bmp, .jpeg, .jpg, .png, .webp)", str(split / "a"))
    write_jpegs(split / "a", 1, seed=0, sizes=(20, 30))
    assert refusal(tmp_path, "train", classes=[]) == ("the list of classes to keep is empty", str(split))
    assert refusal(tmp_path, "train", classes=["a", "a"]) == ("the list of classes to keep names a class twice", str(split))
    assert refusal(tmp_path, "train", classes=["a", "z1", "z2", "z3", "z4", "z5", "z6", "z7"]) == (
        "has no folder for class(es) z1, z2, z3, z4, z5 and 2 more", str(split))
    assert refusal(tmp_path, "train", classes=["z1", "z2", "z3", "z4", "z5"]) == (
        "has no folder for class(es) z1, z2, z3, z4, z5", str(split))
    assert refusal(tmp_path, "train", classes=["z1", "z2", "z3", "z4", "z5", "z6"]) == (
        "has no folder for class(es) z1, z2, z3, z4, z5 and 1 more", str(split))


def test_image_names_are_the_files_paths_and_nothing_is_cached_when_asked(tmp_path: Path, cache: Path) -> None:
    (first,) = write_jpegs(tmp_path / "train" / "a", 1, seed=0, sizes=(20, 30))
    index = build_index(tmp_path, "train", cache_dir=cache, use_cache=False)
    assert index.name(0) == str(first.resolve()) and index.from_cache is False
    assert not cache.exists()


def test_each_folder_and_class_list_has_its_own_cache(tmp_path: Path, cache: Path) -> None:
    for tree in ("one", "two"):
        for name in ("a", "b"):
            write_jpegs(tmp_path / tree / "x" / "train" / name, 1, seed=0, sizes=(20, 30))
    trees = [tmp_path / tree / "x" for tree in ("one", "two")]  # the same split and folder names, other paths
    for root in trees:
        for classes in (["a"], ["a", "b"]):
            assert build_index(root, "train", classes, cache_dir=cache).from_cache is False
    assert len(list(cache.glob("*.json"))) == 4
    assert all(build_index(root, "train", classes, cache_dir=cache).from_cache is True
               for root in trees for classes in (["a"], ["a", "b"]))


def test_a_cache_file_of_another_format_root_or_class_list_is_not_used(tmp_path: Path, cache: Path) -> None:
    import json

    write_jpegs(tmp_path / "train" / "a", 2, seed=0, sizes=(20, 30))
    build_index(tmp_path, "train", cache_dir=cache)
    (stored,) = cache.glob("*.json")
    good = json.loads(stored.read_text(encoding="utf-8"))
    for tampered in ([good], {**good, "format": -1}, {**good, "root": "/elsewhere"}, {**good, "classes": ["b"]}):
        stored.write_text(json.dumps(tampered), encoding="utf-8")
        again = build_index(tmp_path, "train", cache_dir=cache)
        assert again.from_cache is False and len(again) == 2, tampered
