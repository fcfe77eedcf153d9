"""Data sets: IDX reading, where Fashion-MNIST is looked for, clear errors, folders, digits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from cmp.engine.data import check_image_data, take_subsets
from cmp.errors import DataError
from cmp_plugins import datasets
from cmp_plugins.datasets import FASHION_FILES, digits, fashion_mnist, image_folder, read_idx


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


def fake_fashion(folder: Path, n_train: int = 12, n_test: int = 5, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, stem in FASHION_FILES.items():
        write_idx(folder / stem, arrays[key], compress)


@pytest.fixture
def no_system_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "SYSTEM_FOLDERS", {})
    monkeypatch.setenv("CMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CMP_DATA", raising=False)


def test_read_idx_plain_and_gzipped(tmp_path: Path) -> None:
    array = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array, compress=False)
    write_idx(tmp_path / "b", array, compress=True)
    assert (read_idx(tmp_path / "a") == array).all()
    assert (read_idx(tmp_path / "b.gz") == array).all()
    (tmp_path / "c").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "c")


def test_fashion_mnist_from_data_root_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_copy: None) -> None:
    fake_fashion(tmp_path / "root", n_train=12)
    fake_fashion(tmp_path / "env" / "FashionMNIST" / "raw", n_train=7, compress=False)
    monkeypatch.setenv("CMP_DATA", str(tmp_path / "env"))
    data = fashion_mnist(tmp_path / "root", False, 0)
    assert data.train_images.shape == (12, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_labels.dtype == torch.int64 and len(data.classes) == 10
    assert fashion_mnist(None, False, 0).train_images.shape[0] == 7  # torchvision's layout under $CMP_DATA


def test_fashion_mnist_missing_everywhere_lists_where_it_looked(tmp_path: Path, no_system_copy: None) -> None:
    with pytest.raises(DataError) as info:
        fashion_mnist(tmp_path, False, 0)
    text = str(info.value)
    assert f"data.root {tmp_path}" in text and "$CMP_DATA (not set)" in text
    assert "download cache" in text and "downloading is off" in text and "dataset-fashion-mnist" in text


def test_fashion_mnist_download_failure_is_reported(tmp_path: Path, no_system_copy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match=r"the download failed \(OSError: network is unreachable\)"):
        fashion_mnist(None, True, 0)


def test_digits_split_is_fixed_by_seed() -> None:
    a, b, c = digits(None, False, 0), digits(None, False, 0), digits(None, False, 1)
    assert a.train_images.shape[1:] == (1, 8, 8) and a.train_images.max() > 200
    assert len(a.train_labels) + len(a.test_labels) == 1797
    assert torch.equal(a.test_labels, b.test_labels) and not torch.equal(a.test_labels, c.test_labels)
    check_image_data(a, "digits")


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for split, count in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20 + i, 10), color=(i * 40, 100, 200)).save(folder / f"{i}.png")
    data = image_folder(tmp_path, False, 0, size=16)
    assert data.classes == ["cat", "dog"]
    assert data.train_images.shape == (6, 3, 16, 16) and data.test_images.shape == (4, 3, 16, 16)
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "test" / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        image_folder(tmp_path, False, 0, size=16)
    with pytest.raises(DataError, match="needs data.root"):
        image_folder(None, False, 0)


def test_subsets_are_fixed_and_bounded() -> None:
    data = digits(None, False, 0)
    a = take_subsets(data, 100, 50, seed=3)
    b = take_subsets(data, 100, 50, seed=3)
    assert a.train_images.shape[0] == 100 and a.test_images.shape[0] == 50
    assert torch.equal(a.train_labels, b.train_labels)
    with pytest.raises(DataError, match="asks for 99999 images"):
        take_subsets(data, 99999, None, seed=0)


def test_a_failed_download_leaves_no_cache_folder_behind(
    tmp_path: Path, no_system_copy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    def half_done(root: str, train: bool = True, download: bool = False) -> None:
        if download:
            Path(root).mkdir(parents=True, exist_ok=True)
            (Path(root) / "cifar-10-python.tar.gz.part").write_bytes(b"partial")
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", half_done)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", half_done)
    with pytest.raises(DataError, match="the download failed"):
        datasets.cifar10(None, True, 0)
    with pytest.raises(DataError, match="the download failed"):
        fashion_mnist(None, True, 0)
    assert not (tmp_path / "cache").exists()  # nor the cache root, which the download created

    kept = tmp_path / "cache" / "cifar10"
    kept.mkdir(parents=True)
    (kept / "mine.txt").write_text("already here")
    with pytest.raises(DataError):
        datasets.cifar10(None, True, 0)
    assert (kept / "mine.txt").read_text() == "already here"  # a folder that was there is not removed
