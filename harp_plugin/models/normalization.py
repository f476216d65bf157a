"""Input normalisation as a layer, so attacks and bounds work in pixel units ([0, 1])."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class InputNormalization(nn.Module):
    """``(x - mean) / std`` per channel; a fixed affine map that bound engines can propagate."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive in every channel, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def for_channels(cls, mean: Sequence[float], std: Sequence[float], channels: int) -> "InputNormalization":
        """One-value statistics broadcast to ``channels``; a mismatched length is an error."""
        return cls(per_channel(mean, channels), per_channel(std, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Broadcast a one-value statistic to every channel; reject a mismatched length."""
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(f"got {len(values)} normalisation values for {channels} input channels")
    return values
