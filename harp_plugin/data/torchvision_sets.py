"""MNIST, Fashion-MNIST, CIFAR-10 and SVHN, read by torchvision's own dataset classes.

Validation is carved, seeded and stratified, out of torchvision's train split; test is its test
split. Files are downloaded only when ``download=True``; when they are missing the error names the
data directory and every file torchvision expects inside it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import datasets as tvd

from harp_plugin.data.assemble import Part, build_splits
from harp_plugin.data.options import ChecksummedOptions, TorchvisionOptions, parse_options
from harp_plugin.data.partition import split_indices
from harp_plugin.data.splits import DataSplits, PathLike

NUM_CLASSES = 10
PIXEL_SCALE = 255.0

Arrays = tuple[torch.Tensor, torch.Tensor]
Reader = Callable[[str, bool, bool, bool], Arrays]
"""``(root, train, download, verify_checksums) -> (uint8 images (N, C, H, W), int64 labels)``."""


class DatasetFilesError(FileNotFoundError):
    """A dataset's files are missing (or fail their checks) and were not downloaded."""


class _UncheckedCIFAR10(tvd.CIFAR10):
    """CIFAR10 that only requires its files to exist: for re-packed or test-written batches."""

    train_list = [[filename, None] for filename, _ in tvd.CIFAR10.train_list]
    test_list = [[filename, None] for filename, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _UncheckedSVHN(tvd.SVHN):
    """SVHN that only requires its ``.mat`` file to exist (see :class:`_UncheckedCIFAR10`)."""

    split_list = {
        split: [url, filename, None] for split, (url, filename, _) in tvd.SVHN.split_list.items()
    }


def _mnist_reader(cls: type[tvd.MNIST]) -> Reader:
    """MNIST-format files carry no checksum at load time, so ``verify`` has nothing to do."""

    def read(root: str, train: bool, download: bool, verify: bool) -> Arrays:
        dataset = cls(root, train=train, download=download)
        return dataset.data.unsqueeze(1), dataset.targets.long()

    return read


def _read_cifar10(root: str, train: bool, download: bool, verify: bool) -> Arrays:
    dataset = (tvd.CIFAR10 if verify else _UncheckedCIFAR10)(root, train=train, download=download)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def _read_svhn(root: str, train: bool, download: bool, verify: bool) -> Arrays:
    split = "train" if train else "test"
    dataset = (tvd.SVHN if verify else _UncheckedSVHN)(root, split=split, download=download)
    return torch.from_numpy(dataset.data), torch.from_numpy(dataset.labels).long()


@dataclass(frozen=True)
class TorchvisionSource:
    """One torchvision dataset: how to read it and which files it needs under ``data_dir``."""

    name: str
    read: Reader
    expected_files: tuple[str, ...]
    options_type: type[TorchvisionOptions] = TorchvisionOptions
    note: str = ""

    def load(
        self,
        data_dir: PathLike | None = None,
        seed: int = 0,
        download: bool = False,
        **options: Any,
    ) -> DataSplits:
        """The registry factory: read both torchvision splits, carve validation out of train."""
        opts = parse_options(self.options_type, self.name, options)
        if data_dir is None:
            raise DatasetFilesError(
                f"dataset {self.name!r} needs data_dir (CLI: --data-dir); {self.layout()}"
            )
        root = os.fspath(data_dir)
        verify = not isinstance(opts, ChecksummedOptions) or opts.verify_checksums
        train_images, train_labels = self._read(root, True, download, verify)
        test_images, test_labels = self._read(root, False, download, verify)
        fractions = (1.0 - opts.val_fraction, opts.val_fraction)
        train, val = (
            Part(train_images, train_labels, indices)
            for indices in split_indices(train_labels, fractions, seed)
        )
        test = Part(test_images, test_labels, torch.arange(len(test_labels)))
        return build_splits(self.name, NUM_CLASSES, PIXEL_SCALE, seed, opts, train, val, test)

    def layout(self) -> str:
        """The files torchvision needs, relative to ``data_dir``, one per line."""
        listing = "".join(f"\n  {path}" for path in self.expected_files)
        return f"it expects, relative to data_dir:{listing}{self.note}"

    def _read(self, root: str, train: bool, download: bool, verify: bool) -> Arrays:
        try:
            return self.read(root, train, download, verify)
        except (RuntimeError, OSError) as error:  # torchvision's "not found" and download errors
            raise DatasetFilesError(self._explain(root, download, error)) from error

    def _explain(self, root: str, download: bool, error: Exception) -> str:
        missing = [p for p in self.expected_files if not os.path.isfile(os.path.join(root, p))]
        if not os.path.isdir(root):
            problem = "does not exist"
        elif len(missing) == len(self.expected_files):
            problem = "holds none of its files"
        elif missing:
            problem = "lacks " + ", ".join(missing)
        else:
            problem = f"has every expected file, but torchvision rejected them ({error})"
            if issubclass(self.options_type, ChecksummedOptions):
                problem += "; pass verify_checksums=False to accept re-packed files"
        action = f"download failed: {error}" if download else "pass download=True (CLI: --download)"
        return f"dataset {self.name!r}: data_dir {root!r} {problem}; {action}. {self.layout()}"

def _mnist_files(cls: type[tvd.MNIST]) -> tuple[str, ...]:
    """The uncompressed idx files that torchvision's ``MNIST._check_exists`` looks for."""
    folder = os.path.join(cls.__name__, "raw")
    return tuple(os.path.join(folder, os.path.splitext(gz)[0]) for gz, _ in cls.resources)


def _cifar10_files() -> tuple[str, ...]:
    names = [name for name, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list]
    names.append(tvd.CIFAR10.meta["filename"])
    return tuple(os.path.join(tvd.CIFAR10.base_folder, name) for name in names)


_IDX_NOTE = "\n(uncompressed idx files; download=True fetches and extracts the .gz archives)"

SOURCES: dict[str, TorchvisionSource] = {
    source.name: source
    for source in (
        TorchvisionSource(
            "mnist", _mnist_reader(tvd.MNIST), _mnist_files(tvd.MNIST), note=_IDX_NOTE
        ),
        TorchvisionSource(
            "fashion-mnist",
            _mnist_reader(tvd.FashionMNIST),
            _mnist_files(tvd.FashionMNIST),
            note=_IDX_NOTE,
        ),
        TorchvisionSource("cifar10", _read_cifar10, _cifar10_files(), ChecksummedOptions),
        TorchvisionSource(
            "svhn",
            _read_svhn,
            tuple(tvd.SVHN.split_list[split][1] for split in ("train", "test")),
            ChecksummedOptions,
        ),
    )
}
