"""Turns index splits of image tensors into a ``DataSplits``: the one place every factory ends."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from harp_plugin.data.options import SplitOptions
from harp_plugin.data.partition import cap_indices
from harp_plugin.data.splits import DataSplits
from harp_plugin.data.tensors import ImageTensorDataset, channel_stats


class Part(NamedTuple):
    """The examples ``indices`` of a pool of ``(N, C, H, W)`` images and their labels."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def require_nonempty(dataset: Dataset, split: str, name: str) -> None:
    """An empty split would only fail later, inside a training or evaluation loop."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(
            f"the {split} split of dataset {name!r} is empty; "
            "raise its fraction or the max_train / max_eval cap"
        )


def build_splits(
    name: str,
    num_classes: int,
    scale: float,
    seed: int,
    options: SplitOptions,
    train: Part,
    val: Part,
    test: Part,
) -> DataSplits:
    """Apply the quick-run caps, wrap each part, and take mean/std from the train split only."""
    caps = {"train": options.max_train, "val": options.max_eval, "test": options.max_eval}
    datasets: dict[str, ImageTensorDataset] = {}
    for split, part in {"train": train, "val": val, "test": test}.items():
        chosen = cap_indices(part.indices, caps[split], seed)
        datasets[split] = ImageTensorDataset(part.images[chosen], part.labels[chosen], scale)
        require_nonempty(datasets[split], split, name)
    train_images = datasets["train"].images
    mean, std = channel_stats(train_images, scale)
    return DataSplits(
        name=name,
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        num_classes=num_classes,
        in_channels=train_images.shape[1],
        input_size=train_images.shape[-1],
        mean=mean,
        std=std,
    )
