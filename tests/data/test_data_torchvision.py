"""The torchvision-backed factories, on tiny files written in the real on-disk formats."""
from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.mnist

from harp_plugin.data.plugin import harp_datasets
from harp_plugin.data.tensors import channel_stats
from harp_plugin.data.torchvision_sets import SOURCES, DatasetFilesError

FACTORIES = harp_datasets()
NAMES = sorted(SOURCES)
SHAPES = {"mnist": (1, 28), "fashion-mnist": (1, 28), "cifar10": (3, 32), "svhn": (3, 32)}


def load(name: str, root: Path, **options: object):
    """Written files carry no real md5, so the checksummed sets skip that check only."""
    if "verify_checksums" in SOURCES[name].options_type.__dataclass_fields__:
        options.setdefault("verify_checksums", False)
    return FACTORIES[name](data_dir=str(root), **options)


def as_uint8(dataset) -> np.ndarray:
    return torch.stack([dataset[i][0] for i in range(len(dataset))]).mul(255).round().byte().numpy()


def rows(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_test_split_is_torchvisions_test_split_in_order(written) -> None:
    name, data = written
    splits = load(name, data.root)
    channels, size = SHAPES[name]
    shape = (splits.name, splits.num_classes, splits.in_channels, splits.input_size)
    assert shape == (name, 10, channels, size)
    image, label = splits.test[3]
    assert image.dtype == torch.float32 and image.shape == (channels, size, size)
    assert label.dtype == torch.int64
    np.testing.assert_array_equal(as_uint8(splits.test), data.test_images)
    assert [int(splits.test[i][1]) for i in range(len(splits.test))] == data.test_labels.tolist()


def test_train_and_val_partition_the_train_split(written) -> None:
    name, data = written
    splits = load(name, data.root)
    train, val = as_uint8(splits.train), as_uint8(splits.val)
    assert (len(train), len(val), len(splits.test)) == (50, 10, len(data.test_labels))
    assert rows(train).isdisjoint(rows(val))
    assert rows(train) | rows(val) == rows(data.train_images)
    val_labels = torch.stack([splits.val[i][1] for i in range(len(splits.val))])
    assert torch.bincount(val_labels, minlength=10).tolist() == [1] * 10  # stratified
    assert 0.0 <= float(train.min()) and float(train.max()) <= 255


def test_statistics_come_from_the_train_split(written) -> None:
    name, data = written
    splits = load(name, data.root)
    mean, std = channel_stats(torch.from_numpy(as_uint8(splits.train)), 255.0)
    assert splits.mean == pytest.approx(mean, abs=1e-6)
    assert splits.std == pytest.approx(std, abs=1e-6)
    assert all(0.4 < m < 0.6 for m in splits.mean)  # uniform random bytes


def test_split_depends_only_on_seed(written) -> None:
    name, data = written
    first, again, other = (load(name, data.root, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(as_uint8(first.val), as_uint8(again.val))
    assert rows(as_uint8(first.val)) != rows(as_uint8(other.val))


def test_caps_and_val_fraction(written) -> None:
    name, data = written
    splits = load(name, data.root, val_fraction=0.5, max_train=7, max_eval=4)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7, 4, 4)


@pytest.mark.parametrize("name", NAMES)
def test_missing_files_error_names_data_dir_and_expected_files(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetFilesError) as caught:
        FACTORIES[name](data_dir=str(tmp_path / "absent"))
    message = str(caught.value)
    assert str(tmp_path / "absent") in message and "does not exist" in message
    assert "download=True" in message
    for path in SOURCES[name].expected_files:
        assert path in message
    with pytest.raises(DatasetFilesError, match="needs data_dir"):
        FACTORIES[name]()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]),
        ("fashion-mnist", ["FashionMNIST/raw/train-labels-idx1-ubyte"]),
        ("cifar10", [f"cifar-10-batches-py/data_batch_{i}" for i in (1, 5)] + ["batches.meta"]),
        ("svhn", ["train_32x32.mat", "test_32x32.mat"]),
    ],
)
def test_expected_files_match_torchvision_layout(name: str, expected: list[str]) -> None:
    layout = SOURCES[name].layout()
    for path in expected:
        assert path in layout


def test_partly_missing_files_are_listed(tmp_path: Path, writers) -> None:
    data = writers["cifar10"](tmp_path)
    (data.root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetFilesError, match=r"lacks cifar-10-batches-py/data_batch_3;"):
        load("cifar10", data.root)


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_checksum_mismatch_suggests_verify_checksums(name: str, tmp_path: Path, writers) -> None:
    writers[name](tmp_path)
    with pytest.raises(DatasetFilesError, match="verify_checksums=False"):
        FACTORIES[name](data_dir=str(tmp_path))


def test_failed_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(DatasetFilesError, match="(?s)download failed.*network unreachable"):
        FACTORIES["mnist"](data_dir=str(tmp_path), download=True)


def test_unknown_option_lists_valid_ones(tmp_path: Path) -> None:
    message = r"'verify_checksums' for dataset 'mnist'; valid .*val_fraction"
    with pytest.raises(ValueError, match=message):
        FACTORIES["mnist"](data_dir=str(tmp_path), verify_checksums=False)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, "0.1"])
def test_bad_val_fraction(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=r"val_fraction must lie in \(0, 1\)"):
        FACTORIES["cifar10"](data_dir=str(tmp_path), val_fraction=bad)
