"""What a run (the main job or the bench) reads from its dataset, built one way for both: the
seeded splits with their image caps, the three loaders, and a two-image example on the run's
device (for tracing, cost counting and latency)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from harp_plugin.data import load_dataset
from harp_plugin.data.loaders import make_loaders
from harp_plugin.data.splits import DataSplits


class DataSettings(Protocol):
    """The settings a run's data depends on (``RunConfig`` and ``BenchConfig`` both have them)."""

    dataset: str
    data_dir: Optional[str]
    download: bool
    max_train: Optional[int]
    max_eval: Optional[int]
    seed: int
    batch_size: int


@dataclass(frozen=True)
class RunData:
    """The splits, the train/val/test loaders and the example batch of one run."""

    splits: DataSplits
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    example: Tensor


def load_splits(settings: DataSettings) -> DataSplits:
    """The run's dataset splits (seeded, with its caps on training and evaluation images)."""
    caps = {k: v for k, v in (("max_train", settings.max_train), ("max_eval", settings.max_eval)) if v is not None}
    return load_dataset(
        settings.dataset, data_dir=settings.data_dir, seed=settings.seed, download=settings.download, **caps
    )


def load_run_data(settings: DataSettings, device: str | torch.device) -> RunData:
    """Splits, loaders (train order seeded by ``settings.seed``) and the example batch on ``device``."""
    splits = load_splits(settings)
    train_loader, val_loader, test_loader = make_loaders(splits, settings.batch_size, seed=settings.seed)
    example = next(iter(val_loader))[0][:2].to(device)
    return RunData(splits, train_loader, val_loader, test_loader, example)
