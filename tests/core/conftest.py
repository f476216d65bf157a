"""Small seeded models and data shared by the core tests."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.models import small_cnn


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return small_cnn(num_classes=3, input_size=8, width=4)


@pytest.fixture
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Three separable classes of 8×8 images: a bright band in a class-specific row block."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 3
    images = 0.2 * torch.rand(48, 1, 8, 8, generator=generator)
    for index, label in enumerate(labels.tolist()):
        images[index, 0, 2 * label : 2 * label + 3] += 0.7
    return images.clamp(0, 1), labels


@pytest.fixture
def tiny_loaders(tiny_data) -> tuple[DataLoader, DataLoader]:
    images, labels = tiny_data
    train = DataLoader(
        TensorDataset(images[:36], labels[:36]), batch_size=12, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )
    val = DataLoader(TensorDataset(images[36:], labels[36:]), batch_size=12)
    return train, val
