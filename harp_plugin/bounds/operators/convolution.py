"""Convolutions (``nn.Conv1d``, ``nn.Conv2d``); CROWN goes back through them as transposed
convolutions, of dense coefficients (image layout) or of per-neuron patch kernels (2-D)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import AffineOp, effective_parameter

if TYPE_CHECKING:
    from harp_plugin.bounds.methods.patches import Patches

_FORWARD = {1: F.conv1d, 2: F.conv2d}
_TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


class ConvOp(AffineOp):
    def __init__(self, module: nn.Conv1d | nn.Conv2d, name: str) -> None:
        if module.padding_mode != "zeros":
            raise NoBoundRule(f"padding_mode={module.padding_mode!r}")
        self.weight = effective_parameter(module, "weight")
        self._bias = effective_parameter(module, "bias")
        self.dims = self.weight.dim() - 2
        self.stride, self.dilation, self.groups = module.stride, module.dilation, module.groups
        self.padding = _numeric_padding(module)

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return _FORWARD[self.dims](x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def linear(self, x: Tensor) -> Tensor:
        return self._conv(x, self.weight)

    def abs_linear(self, x: Tensor) -> Tensor:
        return self._conv(x, self.weight.abs())

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        kernel = self.weight.shape[2:]
        output_padding = tuple(
            size - ((out - 1) * s - 2 * p + d * (k - 1) + 1)
            for size, out, s, p, d, k in zip(
                in_shape[1:], A.shape[2:], self.stride, self.padding, self.dilation, kernel
            )
        )
        return _TRANSPOSED[self.dims](
            A, self.weight, None, self.stride, self.padding, output_padding, self.groups, self.dilation
        )

    def transpose_patches(self, patches: "Patches", in_shape: torch.Size) -> Optional["Patches"]:
        """A window of the output with top-left t reads the input window with top-left
        t·stride − padding; its kernel is the transposed convolution of the output kernel
        (viewed as a small image) with the weight, at this layer's stride and dilation."""
        if self.dims != 2:
            return None
        kernels = patches.kernels
        composed = F.conv_transpose2d(
            kernels.flatten(0, 2), self.weight, None, self.stride, 0, 0, self.groups, self.dilation
        )
        stride = tuple(s * s2 for s, s2 in zip(patches.stride, self.stride))
        padding = tuple(p * s2 + p2 for p, s2, p2 in zip(patches.padding, self.stride, self.padding))
        return patches.moved(composed.view(*kernels.shape[:3], *composed.shape[1:]), stride, padding, in_shape)

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        return None if self._bias is None else self._bias.view(-1, *([1] * self.dims))


def _numeric_padding(module: nn.Conv1d | nn.Conv2d) -> tuple[int, ...]:
    if not isinstance(module.padding, str):
        return tuple(module.padding)
    if module.padding == "valid":
        return (0,) * len(module.kernel_size)
    reach = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
    if any(r % 2 for r in reach):
        raise NoBoundRule("asymmetric padding='same'")
    return tuple(r // 2 for r in reach)
