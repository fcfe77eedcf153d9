"""Streamed data sets: image trees and tar shards as `StreamedData`, their checks, subsets and recipes."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cmp.api.contracts import IMAGENET_MEAN, IMAGENET_STD, StreamedData
from cmp.api.loader import load_plugins
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.engine.data import check_image_data, take_subsets, train_count
from cmp.errors import CmpError, DataError
from cmp.streaming import ImageIndex, Subset, build_index, write_shards
from cmp.streaming.generate import DEFAULT_OUT, generate
from cmp_plugins.streamed_datasets import class_list, image_shards, image_tree, shard_paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tree: 3 classes, 15 training and 6 validation JPEGs."""
    root = tmp_path_factory.mktemp("generated")
    generate(root, images=15, val_images=6, classes=3)
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cache"))


def test_an_image_tree_is_streamed_data_with_its_classes_labels_and_statistics(tree: Path) -> None:
    data = image_tree(tree, True, 0, size=32, num_workers=0)
    assert isinstance(data, StreamedData)
    check_image_data(data, "test")
    assert data.classes == ["class_00", "class_01", "class_02"] and len(data.train) == 15 and len(data.test) == 6
    assert data.train.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert (data.mean, data.std) == (IMAGENET_MEAN, IMAGENET_STD)  # colour: ImageNet's, nothing decoded
    info = data.info()
    assert (info.channels, info.height, info.width, info.num_classes) == (3, 32, 32, 3)
    assert train_count(data) == 15

    grey = image_tree(tree, True, 0, size=32, channels=1, num_workers=0)  # grey: estimated on the crops
    again = image_tree(tree, True, 0, size=32, channels=1, num_workers=0)
    assert len(grey.mean) == 1 and 0 < grey.mean[0] < 1 and 0 < grey.std[0] < 0.5
    assert (grey.mean, grey.std) == (again.mean, again.std)  # a fixed sample: the same at every start


def test_classes_from_a_list_or_a_file_restrict_and_order_the_labels(tree: Path, tmp_path: Path) -> None:
    listed = image_tree(tree, True, 0, classes=["class_02", "class_00"], num_workers=0)
    assert listed.classes == ["class_02", "class_00"] and len(listed.train) == 10
    assert listed.train.labels.tolist() == [0] * 5 + [1] * 5
    (tree / "ids.txt").write_text("# two of them\nclass_01  the second\n\nclass_00\n")
    from_file = image_tree(tree, True, 0, classes="ids.txt", num_workers=0)  # relative to data.root
    assert from_file.classes == ["class_01", "class_00"] and len(from_file.test) == 4
    with pytest.raises(DataError, match="no such file of class names") as missing:
        image_tree(tree, True, 0, classes="nowhere.txt")
    assert missing.value.where == "data.params.classes"
    with pytest.raises(DataError, match="has no folder for class"):
        image_tree(tree, True, 0, classes=["class_09"])


def test_the_imagenet_100_file_lists_the_100_cmc_classes() -> None:
    names = class_list("recipes/imagenet100_classes.txt", None)  # found from the checkout
    assert names is not None and len(names) == len(set(names)) == 100
    assert all(re.fullmatch(r"n\d{8}", n) for n in names)
    assert names[:3] == ["n02869837", "n01749939", "n02488291"] and names[-1] == "n02090622"


def test_the_recipes_resolve_and_the_small_one_reads_where_the_generator_writes(tmp_path: Path) -> None:
    plugins = load_plugins("none")
    small = load_recipe(ROOT / "recipes" / "streamed_small.yaml", [f"data.root={tmp_path}"])
    assert Path(load_recipe(ROOT / "recipes" / "streamed_small.yaml").model.data.root or "") == DEFAULT_OUT
    imagenet = load_recipe(ROOT / "recipes" / "imagenet100.yaml", [f"data.root={tmp_path}"])
    for recipe in (small, imagenet):
        cells = resolve(recipe, plugins.registry)
        assert {c.method for c in cells} == {"simclr", "moco"} and cells[0].data.dataset == "image_tree"
    assert imagenet.model.data.params["classes"] == "recipes/imagenet100_classes.txt"
    assert resolve(imagenet, plugins.registry)[0].part("encoder").name == "resnet50"


def test_a_missing_root_says_what_it_must_hold_and_for_the_example_how_to_write_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plugins = load_plugins("none")
    with pytest.raises(CmpError, match=r"data.root: directory 'data/streamed_small' does not exist; it must hold "
                       r"train/<class>/ and val/<class>/ .*`python -m cmp.streaming.generate data/streamed_small`"):
        resolve(load_recipe(ROOT / "recipes" / "streamed_small.yaml"), plugins.registry)
    with pytest.raises(DataError, match="no such folder; it must hold train") as missing:
        image_tree(tmp_path / "absent", True, 0)
    assert "generate" not in str(missing.value)  # not the example's folder: no command to write it


def test_subsets_of_a_streamed_set_are_the_seeded_rows_a_tensor_set_gets(tree: Path) -> None:
    data = image_tree(tree, True, 0, num_workers=0)
    small = take_subsets(data, 7, 4, seed=3)
    assert isinstance(small.train, Subset) and len(small.train) == 7 and len(small.test) == 4
    tensors = take_subsets_of_tensors(15, 6, 7, 4, seed=3)
    assert small.train.rows.tolist() == tensors[0] and small.test.rows.tolist() == tensors[1]
    assert small.train.labels.tolist() == data.train.labels[small.train.rows].tolist()
    assert small.train.read(0) == data.train.read(int(small.train.rows[0]))
    assert small.train.name(1) == data.train.name(int(small.train.rows[1]))
    with pytest.raises(DataError, match="asks for 16 images, but the split holds 15"):
        take_subsets(data, 16, None, seed=0)


def take_subsets_of_tensors(n_train: int, n_test: int, subset: int, test_subset: int, seed: int) -> tuple[list[int], list[int]]:
    """The rows the tensor path keeps, read back through images whose pixels are their row numbers."""
    from cmp.api.contracts import ImageData

    def numbered(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)

    data = ImageData("rows", numbered(n_train), torch.zeros(n_train, dtype=torch.int64),
                     numbered(n_test), torch.zeros(n_test, dtype=torch.int64), ["only"])
    picked = take_subsets(data, subset, test_subset, seed)
    return picked.train_images.flatten().tolist(), picked.test_images.flatten().tolist()


def test_bad_streamed_data_is_refused_with_what_is_wrong(tree: Path) -> None:
    data = image_tree(tree, True, 0, num_workers=0)
    index = data.train
    assert isinstance(index, ImageIndex)
    index.labels = index.labels.copy()
    index.labels[0] = 7
    with pytest.raises(DataError, match=r"train labels must lie in \[0, 3\)"):
        check_image_data(data, "dataset 'x'")
    index.labels = index.labels.astype(np.int32)
    with pytest.raises(DataError, match="train labels must be int64"):
        check_image_data(data, "dataset 'x'")


@pytest.fixture(scope="module")
def shards(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    cache = tmp_path_factory.mktemp("shard-cache")
    for split in ("train", "val"):
        write_shards(build_index(tree, split, cache_dir=cache), out / split, per_shard=4)
    return out


def test_image_shards_by_folder_glob_or_brace_range_hold_the_tree(tree: Path, shards: Path) -> None:
    by_folder = image_shards(shards, True, 0, size=32, num_workers=0)
    check_image_data(by_folder, "test")
    assert by_folder.classes == ["class_00", "class_01", "class_02"] and len(by_folder.train) == 15
    assert by_folder.train.read(14) == (tree / "train" / "class_02" / "train_000014.jpg").read_bytes()
    by_glob = image_shards(None, True, 0, train=str(shards / "train" / "shard-*.tar"), val=str(shards / "val"), num_workers=0)
    by_range = image_shards(shards, True, 0, train="train/shard-{000000..000003}.tar", num_workers=0)
    assert by_glob.train.labels.tolist() == by_range.train.labels.tolist() == by_folder.train.labels.tolist()
    assert shard_paths(["a-{08..10}.tar"], Path("/r")) == [Path("/r/a-08.tar"), Path("/r/a-09.tar"), Path("/r/a-10.tar")]
    with pytest.raises(DataError, match="matches no shard"):
        image_shards(shards, True, 0, train="train/none-*.tar")


def test_a_truncated_shard_is_one_error_naming_it(shards: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in (shards / "train").iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    shard = broken / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:1500])
    with pytest.raises(DataError) as failed:
        image_shards(None, True, 0, train=str(broken), val=str(shards / "val"))
    assert failed.value.where == str(shard) and "\n" not in str(failed.value)
    assert tarfile.is_tarfile(shards / "train" / "shard-000001.tar")
