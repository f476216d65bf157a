"""Per-channel affine maps: eval-mode BatchNorm and the models' input normalisation."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import AffineOp, effective_parameter
from harp_plugin.models.normalization import InputNormalization


class ChannelAffineOp(AffineOp):
    """``x * scale + shift`` per channel (dimension 1)."""

    elementwise = True
    spatially_uniform = True

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        self.scale, self.shift = scale.flatten(), shift.flatten()

    @staticmethod
    def _per_channel(values: Tensor, rank: int) -> Tensor:
        return values.view(-1, *([1] * (rank - 1)))

    def linear(self, x: Tensor) -> Tensor:
        return x * self._per_channel(self.scale, x.dim() - 1)

    def abs_linear(self, x: Tensor) -> Tensor:
        return x * self._per_channel(self.scale.abs(), x.dim() - 1)

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        return self.linear(A)

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        return self._per_channel(self.shift, len(out_shape))


def batch_norm_module(module: nn.modules.batchnorm._BatchNorm, name: str) -> ChannelAffineOp:
    """The eval-mode function: running statistics, whatever mode the module is in."""
    if module.running_mean is None or module.running_var is None:
        raise NoBoundRule("no running statistics (track_running_stats=False)")
    return batch_norm_op(module, module.running_mean, module.running_var)


def batch_norm_op(module: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor) -> ChannelAffineOp:
    """BatchNorm as a per-channel affine map with the given statistics."""
    scale = torch.rsqrt(var + module.eps)
    weight, bias = effective_parameter(module, "weight"), effective_parameter(module, "bias")
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return ChannelAffineOp(scale, shift)


def input_normalization_module(module: InputNormalization, name: str) -> ChannelAffineOp:
    return ChannelAffineOp(1 / module.std, -module.mean / module.std)
