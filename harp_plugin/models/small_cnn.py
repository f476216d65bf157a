"""The default model: a small CNN for 28×28 (MNIST-like) inputs, fast on a CPU."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from harp_plugin.models.normalization import InputNormalization


def small_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    width: int = 32,
) -> nn.Sequential:
    """conv(w)-conv(2w, s2)-conv(2w)-conv(4w, s2) with BN+ReLU, then FC(128)-FC(classes).

    Four convs and two FCs give rate learning several layers of different sizes to trade
    off, while an epoch over 3,500 MNIST images stays at seconds on a CPU.
    """
    if input_size < 4:
        raise ValueError(f"small_cnn needs input_size >= 4, got {input_size}")
    reduced = ((input_size + 1) // 2 + 1) // 2  # a 3×3, stride-2, padding-1 conv gives ceil(n / 2)
    return nn.Sequential(
        InputNormalization.for_channels(mean, std, in_channels),
        _conv_bn_relu(in_channels, width, stride=1),
        _conv_bn_relu(width, 2 * width, stride=2),
        _conv_bn_relu(2 * width, 2 * width, stride=1),
        _conv_bn_relu(2 * width, 4 * width, stride=2),
        nn.Flatten(),
        nn.Linear(4 * width * reduced * reduced, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )
