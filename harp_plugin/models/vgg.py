"""CIFAR-style VGG16 with batch norm (the HYDRA/HARP papers' VGG16)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from harp_plugin.models.normalization import InputNormalization

VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def vgg16_bn(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
) -> nn.Sequential:
    """13 conv3×3+BN+ReLU layers in five max-pooled stages, global average pool, one FC."""
    layers: list[nn.Module] = [
        InputNormalization.for_channels(mean, std, in_channels)
    ]
    channels = in_channels
    pools = 0
    for item in VGG16_LAYOUT:
        if item == "M":
            if input_size >> (pools + 1) >= 1:
                layers.append(nn.MaxPool2d(2))
                pools += 1
            continue
        layers += [
            nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
            nn.BatchNorm2d(int(item)),
            nn.ReLU(),
        ]
        channels = int(item)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
