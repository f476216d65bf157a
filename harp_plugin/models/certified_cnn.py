"""The default model of certified training: a small CNN whose bounds stay tight and cheap."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from harp_plugin.models.normalization import InputNormalization


def certified_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    width: int = 16,
    hidden: int = 100,
) -> nn.Sequential:
    """conv4×4 s2(w) → conv4×4 s2(2w) → FC(hidden) → FC(classes), BN + ReLU after every hidden
    layer (≈170 k parameters at 28×28 with w = 16).

    The two strided convolutions make the feature maps small at once, so IBP and CROWN-IBP
    cost a few forward passes of a tiny network (the "small" CNN of the IBP literature);
    BatchNorm after every layer, FC included, is what Shi et al. (2021) found keeps short
    IBP training balanced.
    """
    reduced = input_size // 4  # each 4×4, stride-2, padding-1 conv halves (floor) the size
    if reduced < 1:
        raise ValueError(f"certified_cnn needs input_size >= 4, got {input_size}")
    return nn.Sequential(
        InputNormalization.for_channels(mean, std, in_channels),
        nn.Sequential(nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
        nn.Sequential(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()),
        nn.Flatten(),
        nn.Sequential(nn.Linear(2 * width * reduced * reduced, hidden), nn.BatchNorm1d(hidden), nn.ReLU()),
        nn.Linear(hidden, num_classes),
    )
