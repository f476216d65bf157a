"""Element-wise activations: ReLU, and the piecewise-linear ReLU6, Hardtanh and LeakyReLU.

ReLU keeps CROWN's relaxation (upper: the chord; lower: slope 1 if u > −l else 0), the one
auto_LiRPA uses, so both engines agree. The other activations use one generic sound
relaxation of a non-decreasing piecewise-linear function: the chord between the interval's
ends, shifted down (lower line) and up (upper line) by the largest gap to the function, which
for piecewise-linear functions lies at an end or a breakpoint. Stable neurons are exact.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import Bound, RelaxedOp


class ReLUOp(RelaxedOp):
    def function(self, x: Tensor) -> Tensor:
        return x.clamp(min=0)

    def inexact(self, lower: Tensor, upper: Tensor) -> Tensor:
        return (lower < 0) & (upper > 0)

    def lines(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        up_slope, up_intercept, low_slope = relu_relaxation(lower, upper)
        return low_slope, torch.zeros_like(lower), up_slope, up_intercept


def relu_relaxation(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Upper line (slope, intercept) and lower slope of ReLU on [lower, upper]."""
    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, upper - lower, torch.ones_like(upper))
    triangle = upper / width
    up_slope = torch.where(active, torch.ones_like(upper), torch.where(unstable, triangle, torch.zeros_like(upper)))
    up_intercept = torch.where(unstable, -lower * triangle, torch.zeros_like(upper))
    low_slope = (active | (unstable & (upper > -lower))).to(upper.dtype)
    return up_slope, up_intercept, low_slope


class PiecewiseLinearOp(RelaxedOp):
    """A non-decreasing piecewise-linear activation with the given breakpoints."""

    def __init__(self, function, breakpoints: Sequence[float]) -> None:
        self._function, self.breakpoints = function, tuple(breakpoints)

    def function(self, x: Tensor) -> Tensor:
        return self._function(x)

    def inexact(self, lower: Tensor, upper: Tensor) -> Tensor:
        crossing = [(lower < b) & (upper > b) for b in self.breakpoints]
        return torch.stack(crossing).any(0)

    def lines(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        width = upper - lower
        flat = width <= 0
        slope = torch.where(flat, torch.zeros_like(width), (self.function(upper) - self.function(lower)) / torch.where(flat, torch.ones_like(width), width))
        intercept = self.function(lower) - slope * lower
        points = [lower, upper] + [torch.minimum(torch.maximum(torch.full_like(lower, b), lower), upper) for b in self.breakpoints]
        gaps = torch.stack([self.function(p) - (slope * p + intercept) for p in points])
        return slope, intercept + gaps.min(0).values, slope, intercept + gaps.max(0).values


def relu_rule(args: tuple, kwargs: dict):
    return ReLUOp(), [args[0]]


def _leaky(slope: float) -> PiecewiseLinearOp:
    if not 0 <= slope <= 1:
        raise NoBoundRule(f"LeakyReLU negative_slope={slope} is outside [0, 1] (not monotone-convex)")
    return PiecewiseLinearOp(lambda x: F.leaky_relu(x, slope), [0.0])


def _hardtanh(low: float, high: float) -> PiecewiseLinearOp:
    return PiecewiseLinearOp(lambda x: x.clamp(low, high), [low, high])


def leaky_relu_module(module: nn.LeakyReLU, name: str) -> PiecewiseLinearOp:
    return _leaky(module.negative_slope)


def hardtanh_module(module: nn.Hardtanh, name: str) -> PiecewiseLinearOp:
    return _hardtanh(module.min_val, module.max_val)


def leaky_relu_rule(args: tuple, kwargs: dict):
    slope = args[1] if len(args) > 1 and not isinstance(args[1], Bound) else kwargs.get("negative_slope", 0.01)
    return _leaky(float(slope)), [args[0]]


def hardtanh_rule(args: tuple, kwargs: dict):
    low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return _hardtanh(float(low), float(high)), [args[0]]


def relu6_rule(args: tuple, kwargs: dict):
    return _hardtanh(0.0, 6.0), [args[0]]
