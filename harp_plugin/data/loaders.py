"""DataLoaders over a ``DataSplits``: a seeded, shuffled train loader and ordered eval loaders."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from harp_plugin.data.assemble import require_nonempty
from harp_plugin.data.options import require_positive_int
from harp_plugin.data.splits import DataSplits


def make_loaders(
    splits: DataSplits, batch_size: int, num_workers: int = 0, seed: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """``(train, val, test)`` loaders; the train order depends only on ``seed``.

    Evaluation loaders keep the split order so that per-example results line up across runs.
    """
    require_positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    for split in ("train", "val", "test"):
        require_nonempty(getattr(splits, split), split, splits.name)
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(
        splits.train,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=generator,
    )
    val, test = (
        DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        for dataset in (splits.val, splits.test)
    )
    return train, val, test
