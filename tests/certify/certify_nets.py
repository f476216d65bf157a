"""Tiny random networks for the certification tests (no dependence on harp_plugin.models' zoo)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


def strided_net(seed: int, channels: int = 2, size: int = 8, classes: int = 4) -> nn.Sequential:
    """normalise → conv-ReLU → stride-2 conv-ReLU → FC (auto_LiRPA 0.7.1's CROWN fails on it
    unless the normalisation is handed over as a convolution)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        InputNormalization([0.4] * channels, [0.3] * channels),
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * (size // 2) ** 2, classes),
    ).eval()


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


class HandResidual(nn.Module):
    """A residual model written the way users write them: ``x + self.body(x)`` in forward,
    functional ReLU, ``torch.flatten``; max pooling with overlapping windows (as ResNet's
    stem has) unless ``overlap=False``."""

    def __init__(self, channels: int = 2, width: int = 4, classes: int = 4, size: int = 8, overlap: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if overlap else nn.MaxPool2d(2)
        self.head = nn.Linear(width * (size // 2) ** 2, classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.body(x))
        return self.head(torch.flatten(self.pool(x), 1))


class BranchNet(nn.Module):
    """Two branches joined by ``torch.cat``; ``.view``, ``permute``, ``mean``, constant
    normalisation and matmul by a constant, LeakyReLU / ReLU6 / Hardtanh, functional pools."""

    def __init__(self, channels: int = 2, classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, 1, 1), 0.45))
        self.register_buffer("std", torch.full((1, channels, 1, 1), 0.3))
        self.left = nn.Conv2d(channels, 3, 3, padding=1)
        self.right = nn.Sequential(nn.Conv2d(channels, 3, 1), nn.LeakyReLU(0.1))
        self.mix = nn.Conv2d(6, 4, 3, padding=1)
        self.project = nn.Parameter(torch.randn(4, 5) * 0.5)
        self.head = nn.Linear(5 + 4 * 16, classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = torch.cat([F.relu6(self.left(x) * 2.0), self.right(x)], dim=1)
        x = F.hardtanh(self.mix(x), -1.0, 2.0)
        pooled = F.max_pool2d(x, 2)
        global_part = pooled.mean([2, 3]) @ self.project
        local_part = F.avg_pool2d(pooled.permute(0, 2, 3, 1), (1, 1)).transpose(1, 3).reshape(x.size(0), -1)
        return self.head(torch.cat([global_part, local_part], 1))


def traced_net(kind: str, seed: int, **options) -> nn.Module:
    """A randomly initialised hand-written model (eval mode, non-trivial BatchNorm)."""
    torch.manual_seed(seed)
    model = {"residual": HandResidual, "branches": BranchNet}[kind](**options)
    randomise_batch_norm(model, torch.Generator().manual_seed(seed))
    return model.eval()
