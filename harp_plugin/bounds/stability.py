"""Per-channel ReLU stability from pre-activation bounds (methods.md §4).

A neuron with bounds [l, u] is unstable iff l < 0 < u. Xiao et al.'s RS = −tanh(1 + l·u);
NRS divides l·u by the preceding BatchNorm's γ_c² (detached) so rescaling BN cannot game it.
Channel scores (higher = more stable = keep) average over samples and positions.
"""
from __future__ import annotations

import torch
from torch import Tensor

from harp_plugin.bounds.engine import unstable_mask

MODES = ("nrs", "rs", "count", "relax")


def channel_scores(lower: Tensor, upper: Tensor, mode: str, gamma: Tensor | None = None) -> Tensor:
    """Score per channel (dimension 1) of one ReLU layer's input bounds; higher = more stable.

    nrs/rs: mean tanh(1 + l·u / γ²) (γ = 1 for rs or when no BatchNorm precedes the ReLU);
    count: fraction of stable neurons; relax: minus the mean area factor relu(−l)·relu(u) of
    the triangle relaxation.
    """
    if mode in ("nrs", "rs"):
        product = lower * upper
        if mode == "nrs" and gamma is not None:
            product = product / _per_channel(gamma.detach() ** 2 + 1e-8, lower.dim())
        values = torch.tanh(1 + product)
    elif mode == "count":
        values = 1.0 - unstable_mask(lower, upper).to(lower.dtype)
    elif mode == "relax":
        values = -(lower.clamp(max=0).neg() * upper.clamp(min=0))
    else:
        raise ValueError(f"unknown stability mode {mode!r}; choose one of {MODES}")
    return values.transpose(0, 1).reshape(values.shape[1], -1).mean(1)


def dead_channels(lower: Tensor, upper: Tensor) -> Tensor:
    """Channels whose ReLU is off (u ≤ 0) at every sample and position: they contribute nothing."""
    return (upper <= 0).transpose(0, 1).reshape(upper.shape[1], -1).all(1)


def _per_channel(values: Tensor, rank: int) -> Tensor:
    return values.view(1, -1, *([1] * (rank - 2)))
