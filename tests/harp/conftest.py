"""Small models shared by the HARP tests (seeded; CPU; one thread)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harp_plugin.models.resnet import resnet18
from harp_plugin.models.small_cnn import small_cnn

torch.set_num_threads(1)


def tiny_cnn() -> nn.Sequential:
    """A sequential CNN for 1×12×12 inputs with two convs, a hidden FC and a classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 6 * 6, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )


@pytest.fixture
def sequential() -> nn.Sequential:
    torch.manual_seed(0)
    return tiny_cnn()


@pytest.fixture
def residual() -> nn.Sequential:
    """The project's CIFAR ResNet18 at width 8: BasicBlocks with 1×1 shortcut convs."""
    torch.manual_seed(0)
    return resnet18(num_classes=4, width=8)


@pytest.fixture
def default_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return small_cnn(width=8)
