"""Writers of tiny datasets in the exact on-disk formats torchvision reads."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
import scipy.io

TRAIN_PER_CLASS = 6  # val_fraction 0.1 then leaves exactly one per class for validation
TEST_PER_CLASS = 2
CIFAR_TRAIN_BATCHES = 5


class Written(NamedTuple):
    """What a writer put on disk: images as (N, C, H, W) uint8 and their labels (0..9)."""

    root: Path
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _random_split(rng: np.random.Generator, per_class: int, shape: tuple[int, ...]) -> tuple:
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    return rng.integers(0, 256, size=(len(labels), *shape), dtype=np.uint8), labels


def _random_dataset(root: Path, shape: tuple[int, ...]) -> Written:
    rng = np.random.default_rng(0)
    train_images, train_labels = _random_split(rng, TRAIN_PER_CLASS, shape)
    test_images, test_labels = _random_split(rng, TEST_PER_CLASS, shape)
    return Written(root, train_images, train_labels, test_images, test_labels)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX ("SN3 Pascal Vincent"): magic 0x0000 08 <ndim>, big-endian int32 dims, raw uint8."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str) -> Written:
    """``<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, as torchvision extracts."""
    data = _random_dataset(root, (1, 28, 28))
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, images, labels in (
        ("train", data.train_images, data.train_labels),
        ("t10k", data.test_images, data.test_labels),
    ):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:, 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return data


def write_cifar10(root: Path) -> Written:
    """``cifar-10-batches-py/``: pickled dicts of (n, 3072) CHW-flattened uint8 rows and labels."""
    data = _random_dataset(root, (3, 32, 32))
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = zip(
        np.array_split(data.train_images, CIFAR_TRAIN_BATCHES),
        np.array_split(data.train_labels, CIFAR_TRAIN_BATCHES),
    )
    files = {f"data_batch_{i}": batch for i, batch in enumerate(batches, start=1)}
    files["test_batch"] = (data.test_images, data.test_labels)
    for name, (images, labels) in files.items():
        entry = {"data": images.reshape(len(images), -1), "labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return data


def write_svhn(root: Path) -> Written:
    """``{train,test}_32x32.mat``: X as (32, 32, 3, N) uint8, y as (N, 1) with 10 for digit 0."""
    data = _random_dataset(root, (3, 32, 32))
    root.mkdir(parents=True, exist_ok=True)
    for split, images, labels in (
        ("train", data.train_images, data.train_labels),
        ("test", data.test_images, data.test_labels),
    ):
        mat_labels = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)
        contents = {"X": images.transpose(2, 3, 1, 0), "y": mat_labels}
        scipy.io.savemat(root / f"{split}_32x32.mat", contents)
    return data


WRITERS = {
    "mnist": lambda root: write_mnist_like(root, "MNIST"),
    "fashion-mnist": lambda root: write_mnist_like(root, "FashionMNIST"),
    "cifar10": write_cifar10,
    "svhn": write_svhn,
}


@pytest.fixture
def writers() -> dict[str, Callable[[Path], Written]]:
    """Writer per registered dataset name: ``writers[name](root) -> Written``."""
    return WRITERS


@pytest.fixture(params=sorted(WRITERS))
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Written]:
    """Each torchvision dataset in turn, written to ``tmp_path``: (registered name, contents)."""
    return request.param, WRITERS[request.param](tmp_path)
