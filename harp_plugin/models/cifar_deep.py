"""``cifar_model_deep`` of the certified-robustness pruning paper (methods.md §4)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from harp_plugin.models.normalization import InputNormalization


def cifar_model_deep(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
) -> nn.Sequential:
    """conv3×3(32) → conv4×4 s2(64) → conv3×3(64) → conv4×4 s2(128) → conv4×4 s2(128) →
    FC 100 → FC classes, BN + ReLU after each conv (≈0.67 M parameters at 32×32)."""
    spec = [(32, 3, 1, 1), (64, 4, 2, 1), (64, 3, 1, 1), (128, 4, 2, 1), (128, 4, 2, 1)]
    layers: list[nn.Module] = [
        InputNormalization.for_channels(mean, std, in_channels)
    ]
    channels, size = in_channels, input_size
    for out_channels, kernel, stride, padding in spec:
        layers += [
            nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        ]
        channels, size = out_channels, (size + 2 * padding - kernel) // stride + 1
    if size < 1:
        raise ValueError(f"cifar_model_deep needs input_size >= 8, got {input_size}")
    layers += [
        nn.Flatten(),
        nn.Linear(channels * size * size, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    ]
    return nn.Sequential(*layers)
