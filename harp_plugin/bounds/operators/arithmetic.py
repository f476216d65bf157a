"""Arithmetic: the sum and difference of two bounded tensors (residual connections), and
element-wise affine maps by constants (``x - mean``, ``x / std``, ``2 * x``, ``-x``)."""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import Tensor

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import AffineOp, Backward, Bound, BoundOp, Interval, PatchesBackward, bounded

if TYPE_CHECKING:
    from harp_plugin.bounds.methods.patches import Patches


class AddOp(BoundOp):
    """``a + sign · b`` for two bounded tensors of the same shape (sign = −1: subtraction)."""

    def __init__(self, sign: int = 1) -> None:
        self.sign = sign

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        (l1, u1), (l2, u2) = bounds
        return (l1 + l2, u1 + u2) if self.sign > 0 else (l1 - u2, u1 - l2)

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        return [A, A if self.sign > 0 else -A], None

    def backward_patches(self, patches: "Patches", in_bounds: Sequence[Interval]) -> PatchesBackward:
        return [patches, patches if self.sign > 0 else patches.negated()], None


class ScaleShiftOp(AffineOp):
    """``x * scale + shift`` with constants broadcast against x (same output shape as x)."""

    elementwise = True

    def __init__(self, scale: Tensor | float = 1.0, shift: Tensor | float = 0.0) -> None:
        self.scale, self.shift = scale, shift
        self.spatially_uniform = all(map(_uniform_over_space, (scale, shift)))

    def linear(self, x: Tensor) -> Tensor:
        return x * self.scale

    def abs_linear(self, x: Tensor) -> Tensor:
        return x * abs(self.scale)

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        return A * self.scale

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        # a Python number as a float64 scalar: exact in float64 bounds, rounded like the model's
        # own arithmetic in float32 ones (a 0-dim tensor does not promote the other operand)
        if isinstance(self.shift, float):
            return torch.tensor(self.shift, dtype=torch.float64)
        return torch.as_tensor(self.shift)


def _uniform_over_space(value: Tensor | float) -> bool:
    """Whether a constant broadcast against (C, H, W) is the same at every position."""
    return not isinstance(value, Tensor) or value.numel() == 1 or (value.dim() >= 2 and value.shape[-2:] == (1, 1))


def _constant(value, shape: torch.Size):
    """A constant operand that broadcasts into a bounded tensor without enlarging it."""
    if isinstance(value, Tensor):
        if torch.broadcast_shapes(value.shape, shape) != shape:
            raise NoBoundRule(f"a constant of shape {tuple(value.shape)} would broadcast the bounded tensor {tuple(shape)}")
        return value.squeeze(0) if value.dim() == len(shape) and value.shape[0] == 1 else _drop_batch(value, shape)
    if isinstance(value, (int, float)):
        return float(value)
    raise NoBoundRule(f"unsupported constant operand of type {type(value).__name__}")


def _drop_batch(value: Tensor, shape: torch.Size) -> Tensor:
    if value.dim() == len(shape) and value.shape[0] != 1:
        raise NoBoundRule("a constant that differs per sample is not supported")
    return value


def add_rule(args: tuple, kwargs: dict):
    return _add(args, kwargs, 1)


def sub_rule(args: tuple, kwargs: dict):
    return _add(args, kwargs, -1)


def _add(args: tuple, kwargs: dict, sign: int):
    a, b = args[0], args[1] if len(args) > 1 else kwargs["other"]
    if kwargs.get("alpha", 1) != 1:
        raise NoBoundRule("add/sub with alpha != 1")
    if isinstance(a, Bound) and isinstance(b, Bound):
        if a.shape != b.shape:
            raise NoBoundRule(f"operands of shapes {tuple(a.shape)} and {tuple(b.shape)} broadcast")
        return AddOp(sign), [a, b]
    if isinstance(a, Bound):
        return ScaleShiftOp(1.0, sign * _constant(b, a.shape)), [a]
    return ScaleShiftOp(float(sign), _constant(a, b.shape)), [b]


def mul_rule(args: tuple, kwargs: dict):
    a, b = args
    if isinstance(a, Bound) and isinstance(b, Bound):
        raise NoBoundRule("the product of two bounded tensors is not linear")
    x, c = (a, b) if isinstance(a, Bound) else (b, a)
    return ScaleShiftOp(_constant(c, x.shape)), [x]


def div_rule(args: tuple, kwargs: dict):
    x, c = args[0], args[1] if len(args) > 1 else kwargs["other"]
    if not isinstance(x, Bound) or isinstance(c, Bound) or kwargs.get("rounding_mode") is not None:
        raise NoBoundRule("only (bounded tensor) / (constant) is bounded")
    return _Divide(_constant(c, x.shape)), [x]


class _Divide(ScaleShiftOp):
    """``x / c`` computed as the model does (a division, not a multiplication by 1/c)."""

    def __init__(self, divisor: Tensor | float) -> None:
        super().__init__(1.0, 0.0)
        self.divisor = divisor
        self.spatially_uniform = _uniform_over_space(divisor)

    def linear(self, x: Tensor) -> Tensor:
        return x / self.divisor

    def abs_linear(self, x: Tensor) -> Tensor:
        return x / abs(self.divisor)

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        return A / self.divisor


def neg_rule(args: tuple, kwargs: dict):
    return ScaleShiftOp(-1.0), bounded(args)


ADD_TARGETS = (operator.add, operator.iadd, torch.add)
SUB_TARGETS = (operator.sub, operator.isub, torch.sub)
MUL_TARGETS = (operator.mul, operator.imul, torch.mul)
DIV_TARGETS = (operator.truediv, operator.itruediv, torch.div)
