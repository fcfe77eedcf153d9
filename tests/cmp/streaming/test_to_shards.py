"""`python -m cmp.streaming.to_shards`: an image tree's splits as shards holding the same samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmp.streaming import build_index, open_shards
from cmp.streaming.to_shards import main


def test_every_split_becomes_shards_with_the_trees_bytes_labels_and_classes(
    tree: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([str(tree), str(tmp_path / "out"), "--per-shard", "16"]) == 0
    for split in ("train", "val"):
        images, shards = build_index(tree, split, use_cache=False), open_shards(tmp_path / "out" / split, cache_dir=cache)
        assert len(shards) == len(images) and shards.classes == images.classes == ["ant", "bee", "cat"]
        assert [shards.read(i) for i in range(len(shards))] == [images.read(i) for i in range(len(images))]
        assert shards.labels.tolist() == images.labels.tolist()
        assert len(list((tmp_path / "out" / split).glob("*.tar"))) == -(-len(images) // 16)
    said = capsys.readouterr().out.splitlines()
    train = build_index(tree, "train", use_cache=False)
    assert said[0] == f"train: {len(train)} images of 3 classes in {-(-len(train) // 16)} shards under {tmp_path / 'out' / 'train'}/"


def test_a_class_file_keeps_its_classes_in_its_order_for_every_split(tree: Path, tmp_path: Path, cache: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat  # the third folder first\n\nant\n", encoding="utf-8")
    assert main([str(tree), str(tmp_path / "out"), "--classes", str(tmp_path / "classes.txt"), "--splits", "val"]) == 0
    shards = open_shards(tmp_path / "out" / "val", cache_dir=cache)
    images = build_index(tree, "val", ["cat", "ant"], use_cache=False)
    assert shards.classes == ["cat", "ant"] and shards.labels.tolist() == images.labels.tolist()
    assert [shards.read(i) for i in range(len(shards))] == [images.read(i) for i in range(len(images))]
    assert not (tmp_path / "out" / "train").exists()


def test_bad_input_is_one_line_naming_what_is_wrong(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"python -m cmp.streaming.to_shards: error: {tmp_path / 'nowhere' / 'train'}: "
                                       f"no 'train' folder (expected {tmp_path / 'nowhere' / 'train'}/<class>/<images>)\n")
    assert main([str(tree), str(tmp_path / "out"), "--classes", str(tmp_path / "none.txt")]) == 2
    assert capsys.readouterr().err == f"python -m cmp.streaming.to_shards: error: {tmp_path / 'none.txt'}: no such file of class names\n"
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    assert main([str(tree), str(tmp_path / "out"), "--classes", str(tmp_path / "empty.txt")]) == 2
    assert capsys.readouterr().err == f"python -m cmp.streaming.to_shards: error: {tmp_path / 'empty.txt'}: lists no class names\n"
    with pytest.raises(SystemExit) as refused:
        main([str(tree), str(tmp_path / "out"), "--per-shard", "0"])
    assert refused.value.code == 2 and "--per-shard must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written for bad input
    assert main([str(tree), str(tmp_path / "out"), "--splits", "val"]) == 0
    assert main([str(tree), str(tmp_path / "out"), "--splits", "train", "val"]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: {tmp_path / 'out' / 'val'}: already holds tar shards: remove them or choose another folder\n")
    assert not (tmp_path / "out" / "train").exists()  # refused before any split was written
