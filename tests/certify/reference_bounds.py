"""Bounds of small MLPs computed from the definitions of IBP and CROWN, without the engine.

The tests compare the engine against this second implementation, so it is kept short and
literal: one sample at a time, float64, dense matrices.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight)).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float64))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return layer


def random_mlp(seed: int, widths: tuple[int, ...] = (2, 6, 5, 3)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def relaxation(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ReLU on [l, u]: upper line (slope, intercept) = the chord when l < 0 < u; lower
    slope 1 when u > −l else 0 (CROWN's adaptive lower line); exact when stable."""
    on, unstable = low >= 0, (low < 0) & (high > 0)
    chord = torch.where(unstable, high / (high - low).clamp(min=1e-300), torch.zeros_like(high))
    up_slope = torch.where(on, torch.ones_like(high), chord)
    return up_slope, -low * chord, (on | (unstable & (high > -low))).to(high.dtype)


class ReferenceBounds:
    """IBP and CROWN for one sample of an MLP, written from the definitions (float64)."""

    def __init__(self, model: nn.Sequential, low: Tensor, high: Tensor, method: str, intersect: bool) -> None:
        self.layers = [(m.weight.detach(), m.bias.detach()) for m in model if isinstance(m, nn.Linear)]
        self.box = (low, high)
        self.pre: list[tuple[Tensor, Tensor]] = []  # bounds of every hidden pre-activation
        for k in range(len(self.layers) - 1):
            W, b = self.layers[k]
            in_low, in_high = self.box if k == 0 else tuple(v.clamp(min=0) for v in self.pre[-1])
            centre, radius = (in_high + in_low) / 2, (in_high - in_low) / 2
            bounds = (W @ centre + b - W.abs() @ radius, W @ centre + b + W.abs() @ radius)
            if method == "crown" and k > 0:
                bounds = self.tighten(*bounds, k, intersect)
            self.pre.append(bounds)

    def tighten(self, low: Tensor, high: Tensor, k: int, intersect: bool) -> tuple[Tensor, Tensor]:
        """CROWN bounds for the neurons IBP leaves unstable (a stable one is relaxed exactly)."""
        unstable = (low < 0) & (high > 0)
        eye = torch.eye(low.numel(), dtype=low.dtype)
        crown_low, crown_high = self.lower(eye, k), -self.lower(-eye, k)
        if intersect:
            crown_low, crown_high = torch.maximum(low, crown_low), torch.minimum(high, crown_high)
        return torch.where(unstable, crown_low, low), torch.where(unstable, crown_high, high)

    def lower(self, A: Tensor, k: int) -> Tensor:
        """min over the box of A·z_k, z_k the k-th layer's pre-activation (CROWN backward)."""
        W, b = self.layers[k]
        constant, A = A @ b, A @ W
        for j in range(k - 1, -1, -1):
            up_slope, up_intercept, low_slope = relaxation(*self.pre[j])
            positive, negative = A.clamp(min=0), A.clamp(max=0)
            constant = constant + negative @ up_intercept
            A = positive * low_slope + negative * up_slope
            W, b = self.layers[j]
            constant, A = constant + A @ b, A @ W
        return constant + A.clamp(min=0) @ self.box[0] + A.clamp(max=0) @ self.box[1]

    def output(self, C: Tensor, method: str, intersect: bool) -> tuple[Tensor, Tensor]:
        """Bounds of C·f: IBP with C folded into the last layer, and/or (intersected) CROWN."""
        W, b = self.layers[-1]
        low, high = (v.clamp(min=0) for v in self.pre[-1])
        CW = C @ W
        lower = C @ b + CW.clamp(min=0) @ low + CW.clamp(max=0) @ high
        upper = C @ b + CW.clamp(min=0) @ high + CW.clamp(max=0) @ low
        if method == "ibp":
            return lower, upper
        last = len(self.layers) - 1
        crown_lower, crown_upper = self.lower(C, last), -self.lower(-C, last)
        if not intersect:
            return crown_lower, crown_upper
        return torch.maximum(lower, crown_lower), torch.minimum(upper, crown_upper)
