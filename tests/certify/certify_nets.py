"""Tiny random networks for the certification tests (no dependence on harp_plugin.models' zoo)."""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import parametrize, prune

from harp_plugin.bounds import Residual
from harp_plugin.models.normalization import InputNormalization


def randomise_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BN non-trivial statistics and affine terms, so it is not the identity."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)


def sequential_net(seed: int, channels: int = 2, size: int = 8, classes: int = 4, *,
                   stride: int = 1, dilation: int = 1, groups: int = 1, pool: str = "avg") -> nn.Sequential:
    """normalise → conv(BN, ReLU) → pool → grouped/dilated conv(BN, ReLU) → FC → ReLU → FC."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    width = 4 * groups
    pooling = {"avg": nn.AvgPool2d(2, ceil_mode=True), "adaptive": nn.AdaptiveAvgPool2d(3), "none": nn.Identity()}[pool]
    body = nn.Sequential(
        InputNormalization([0.4] * channels, [0.3] * channels),
        nn.Conv2d(channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        pooling,
        nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
    )
    features = body(torch.zeros(1, channels, size, size)).shape[1]
    model = nn.Sequential(body, nn.Linear(features, 10), nn.ReLU(), nn.Linear(10, classes))
    randomise_batch_norm(model, generator)
    return model.eval()


def residual_net(seed: int, channels: int = 2, size: int = 8, classes: int = 4, *, projection: bool = True) -> nn.Sequential:
    """conv-BN-ReLU stem, one residual block (identity or 1×1-conv shortcut), global pool, FC."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    width = 4
    out = 6 if projection else width
    shortcut = nn.Sequential(nn.Conv2d(width, out, 1, stride=2), nn.BatchNorm2d(out)) if projection else None
    block = Residual(
        nn.Sequential(
            nn.Conv2d(width, out, 3, stride=2 if projection else 1, padding=1, bias=False),
            nn.BatchNorm2d(out), nn.ReLU(), nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out),
        ),
        shortcut,
        nn.ReLU(),
    )
    model = nn.Sequential(
        InputNormalization([0.5] * channels, [0.25] * channels),
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        block,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(out, classes),
    )
    randomise_batch_norm(model, generator)
    return model.eval()


def prune_channels(model: nn.Sequential, example: torch.Tensor, ratio: float = 0.4) -> nn.Sequential:
    """Physically remove channels with torch_pruning (the last Linear keeps its outputs)."""
    pruner = tp.MetaPruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio, ignored_layers=[model[-1]],
    )
    pruner.step()
    return model.eval()


class _Mask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def mask_weights(model: nn.Module, seed: int, carrier: str, amount: float = 0.5) -> nn.Module:
    """Zero a random half of every conv/linear weight, via torch.nn.utils.prune or parametrize."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            mask = (torch.rand(module.weight.shape, generator=generator) >= amount).float()
            if carrier == "prune":
                prune.custom_from_mask(module, "weight", mask)
            else:
                parametrize.register_parametrization(module, "weight", _Mask(mask))
    return model
