"""`python -m cmp.streaming.to_shards`: an image tree's splits as shards holding the same samples."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cmp.streaming import build_index, open_shards
from cmp.streaming.to_shards import main
from tests.cmp.streaming.images import write_jpegs


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
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "python -m cmp.streaming.to_shards: error: --per-shard must be at least 1"
    assert not (tmp_path / "out").exists()  # nothing written for bad input
    assert main([str(tree), str(tmp_path / "out"), "--splits", "val"]) == 0
    assert main([str(tree), str(tmp_path / "out"), "--splits", "train", "val"]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: {tmp_path / 'out' / 'val'}: already holds tar shards: remove them or choose another folder\n")
    assert not (tmp_path / "out" / "train").exists()  # refused before any split was written


def test_the_validation_split_keeps_the_training_classes_and_no_index_cache_is_written(
    tree: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree, root)
    write_jpegs(root / "val" / "dog", 2, seed=5, sizes=(30, 40))  # a class the training split lacks
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cmp-cache"))
    assert main([str(root), str(tmp_path / "out"), "--per-shard", "1000"]) == 0
    val = open_shards(tmp_path / "out" / "val", cache_dir=cache)
    want = build_index(root, "val", ["ant", "bee", "cat"], use_cache=False)
    assert val.classes == ["ant", "bee", "cat"] and val.labels.tolist() == want.labels.tolist()
    assert [val.read(i) for i in range(len(val))] == [want.read(i) for i in range(len(want))]
    assert not (tmp_path / "cmp-cache").exists()  # a one-off copy leaves no index behind
    assert capsys.readouterr().out.splitlines()[1] == f"val: {len(want)} images of 3 classes in 1 shard under {tmp_path / 'out' / 'val'}/"
    assert main([str(root), str(tmp_path / "one-each"), "--per-shard", "1", "--splits", "val"]) == 0  # val first: its own 4 classes
    assert len(list((tmp_path / "one-each" / "val").glob("*.tar"))) == len(want) + 2


def test_help_says_what_each_argument_is(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["--help"])
    said = re.sub(r"\s+", " ", capsys.readouterr().out)
    for text in ("usage: python -m cmp.streaming.to_shards",
                 "Copy an image tree (ROOT/<split>/<class>/<images>) into WebDataset tar shards "
                 "OUT/<split>/shard-NNNNNN.tar with classes.txt; the images' bytes as they are.",
                 "root the tree's folder", "out where each split's shards go", "splits to copy (default: train val)",
                 "a file of the class folders to keep, one per line, in label order "
                 "(e.g. recipes/imagenet100_classes.txt); default: every folder of the first split",
                 "samples per shard (default 1000)"):
        assert f" {text} " in f" {said} "


def test_shards_hold_a_thousand_samples_unless_told(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cmp.streaming.to_shards as to_shards

    asked: list[int] = []
    monkeypatch.setattr(to_shards, "write_shards", lambda images, out, per_shard: asked.append(per_shard) or [])
    assert main([str(tree), str(tmp_path / "a")]) == 0 and main([str(tree), str(tmp_path / "b"), "--per-shard", "7"]) == 0
    assert asked == [1000, 1000, 7, 7]

