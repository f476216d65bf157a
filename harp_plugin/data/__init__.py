"""Datasets by name, with deterministic train / validation / test splits and their loaders.

    splits = load_dataset("mnist5k", seed=0)
    train_loader, val_loader, test_loader = make_loaders(splits, batch_size=128, seed=0)
"""
from __future__ import annotations

from typing import Any

from harp_plugin.data.loaders import make_loaders
from harp_plugin.data.partition import split_indices
from harp_plugin.data.size import SmallDatasetWarning, warn_if_small
from harp_plugin.data.splits import DataSplits
from harp_plugin.data.torchvision_sets import DatasetFilesError
from harp_plugin.registry import get_registry

DEFAULT_DATASET = "mnist5k"


def load_dataset(name: str = DEFAULT_DATASET, **kwargs: Any) -> DataSplits:
    """The ``DataSplits`` of the dataset registered as ``name`` (built-in or third-party)."""
    splits = get_registry().create("datasets", name, **kwargs)
    if not isinstance(splits, DataSplits):
        raise TypeError(
            f"dataset factory {name!r} returned {type(splits).__name__}, expected DataSplits"
        )
    warn_if_small(splits)
    return splits


__all__ = [
    "DEFAULT_DATASET",
    "DataSplits",
    "DatasetFilesError",
    "SmallDatasetWarning",
    "load_dataset",
    "make_loaders",
    "split_indices",
]
