"""CIFAR-style ResNet18 whose blocks expose their two paths explicitly.

``BasicBlock.residual`` and ``BasicBlock.shortcut`` are ordinary sub-modules, so pruning
(which must couple the residual add) and bound propagation (which adds the two paths'
bounds) both see the structure without tracing.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from harp_plugin.models.normalization import InputNormalization


class BasicBlock(nn.Module):
    """relu(residual(x) + shortcut(x)); the shortcut is a 1×1 conv + BN when shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        if stride != 1 or c_in != c_out:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


def resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    width: int = 64,
) -> nn.Sequential:
    """3×3 stem (no max-pool, as for CIFAR), four stages of two blocks, global pool, FC."""
    del input_size  # global average pooling makes the network size-agnostic
    layers: list[nn.Module] = [
        InputNormalization.for_channels(mean, std, in_channels),
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    channels = width
    for stage, multiplier in enumerate((1, 2, 4, 8)):
        out_channels = width * multiplier
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(channels, out_channels, stride))
            channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
