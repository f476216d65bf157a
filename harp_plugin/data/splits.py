"""The contract every dataset factory fulfils: deterministic train / validation / test splits."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from torch.utils.data import Dataset

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class DataSplits:
    """Three disjoint splits of one dataset, inputs as float tensors in [0, 1].

    Model selection uses ``val`` only; ``test`` is touched once, for the final report.
    Normalisation is *not* applied here: models carry an ``InputNormalization`` layer so
    that ε is always measured in pixel units.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class DatasetFactory(Protocol):
    """What the ``harp_datasets`` hook maps each name to; options are dataset-specific keywords."""

    def __call__(
        self,
        data_dir: PathLike | None = None,
        seed: int = 0,
        download: bool = False,
        **options: Any,
    ) -> DataSplits: ...
