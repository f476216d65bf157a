"""Fully connected maps: ``nn.Linear``, ``F.linear`` and matmul by a constant matrix."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import AffineOp, Bound, effective_parameter


class LinearOp(AffineOp):
    """``x @ weightᵀ + bias`` on the last dimension."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]) -> None:
        self.weight, self._bias = weight, bias

    def linear(self, x: Tensor) -> Tensor:
        return x @ self.weight.t()

    def abs_linear(self, x: Tensor) -> Tensor:
        return x @ self.weight.abs().t()

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        return A @ self.weight

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        return self._bias


def linear_module(module: nn.Linear, name: str) -> LinearOp:
    return LinearOp(effective_parameter(module, "weight"), effective_parameter(module, "bias"))


def linear_function(args: tuple, kwargs: dict):
    """``F.linear(x, weight, bias=None)`` with constant weight and bias."""
    x, weight, *rest = args
    bias = rest[0] if rest else kwargs.get("bias")
    if not isinstance(x, Bound) or isinstance(weight, Bound) or isinstance(bias, Bound):
        raise NoBoundRule("F.linear needs a bounded input and constant weights")
    return LinearOp(weight, bias), [x]


def matmul_function(args: tuple, kwargs: dict):
    """``x @ W`` for a constant matrix W (a bounded matrix on the right has no linear rule)."""
    x, other = args
    if not isinstance(x, Bound) or isinstance(other, Bound) or torch.as_tensor(other).dim() != 2:
        raise NoBoundRule("only (bounded tensor) @ (constant 2-D matrix) is bounded")
    return LinearOp(torch.as_tensor(other).t(), None), [x]
