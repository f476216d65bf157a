"""Seeded random data for the deployment tests (outputs are compared, not accuracies)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset


def random_loader(shape: tuple[int, ...], classes: int, samples: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(samples, *shape, generator=generator)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=8)
