"""Bound operators: what each supported layer does to an interval and to a linear bound.

Every operator implements two things:

* ``interval(bounds)``: interval bound propagation (IBP) of its input intervals;
* ``backward(A, in_bounds)``: given coefficients ``A`` of shape ``(B, K, *out_shape)`` of a
  linear function of its output, the coefficients on each input and the constant term of a
  *lower* bound of that function (CROWN). Upper bounds are lower bounds of ``-A``.

Parameters are read when the operator is built (the graph is rebuilt on every call), always
through the effective weight, so pruned, masked and parametrised layers are bounded as they
compute.
"""
from __future__ import annotations

import abc
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from harp_plugin.bounds.errors import UnsupportedLayerError
from harp_plugin.models.normalization import InputNormalization

Interval = tuple[Tensor, Tensor]


class BoundOp(abc.ABC):
    """One node's transfer function for intervals (IBP) and for linear bounds (CROWN)."""

    affine: bool = True
    """Whether the node is affine in its inputs (IBP folds the specification through those)."""

    @abc.abstractmethod
    def interval(self, bounds: Sequence[Interval]) -> Interval:
        """Bounds of the output given bounds of each input."""

    @abc.abstractmethod
    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> tuple[list[Tensor], Optional[Tensor]]:
        """Coefficients on each input and the constant (``(B, K)`` or None) of a lower bound."""


class AffineOp(BoundOp):
    """``x -> L(x) + b`` for a linear map L; IBP in centre/radius form, CROWN by L's transpose."""

    @abc.abstractmethod
    def linear(self, x: Tensor) -> Tensor:
        """L(x), batched over the first dimension."""

    @abc.abstractmethod
    def abs_linear(self, x: Tensor) -> Tensor:
        """|L|(x): L with every coefficient replaced by its absolute value."""

    @abc.abstractmethod
    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        """Lᵀ(A) for ``A`` of shape ``(N, *out_shape)``, returning ``(N, *in_shape)``."""

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        """The constant b, broadcastable to ``out_shape``; None when there is none."""
        return None

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        lower, upper = bounds[0]
        centre = self.linear((upper + lower) / 2)
        radius = self.abs_linear((upper - lower) / 2)
        b = self.bias(centre.shape[1:])
        if b is not None:
            centre = centre + b
        return centre - radius, centre + radius

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> tuple[list[Tensor], Optional[Tensor]]:
        batch, rows, out_shape = A.shape[0], A.shape[1], A.shape[2:]
        in_shape = in_bounds[0][0].shape[1:]
        A_in = self.transpose(A.reshape(batch * rows, *out_shape), in_shape)
        b = self.bias(out_shape)
        constant = None if b is None else (A * b).flatten(2).sum(-1)
        return [A_in.reshape(batch, rows, *in_shape)], constant


class LinearOp(AffineOp):
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


class Conv2dOp(AffineOp):
    def __init__(self, module: nn.Conv2d, name: str) -> None:
        if module.padding_mode != "zeros":
            raise UnsupportedLayerError(name, module, f"padding_mode={module.padding_mode!r}")
        self.weight = effective_parameter(module, "weight")
        self._bias = effective_parameter(module, "bias")
        self.stride, self.dilation, self.groups = module.stride, module.dilation, module.groups
        self.padding = _numeric_padding(module, name)

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

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
        return F.conv_transpose2d(
            A, self.weight, None, self.stride, self.padding, output_padding, self.groups, self.dilation
        )

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        return None if self._bias is None else self._bias.view(-1, 1, 1)


class ChannelAffineOp(AffineOp):
    """``x * scale + shift`` per channel (dimension 1): eval-mode BatchNorm, input normalisation."""

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


class SpatialMatrixOp(AffineOp):
    """A pooling layer as the matrix it applies to each channel's positions.

    The matrix is read off the module itself on the basis images, so every option
    (padding, ceil_mode, count_include_pad, divisor_override, adaptive bins) is honoured exactly.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._matrix: Optional[Tensor] = None
        self._out_spatial: Optional[torch.Size] = None

    def _build(self, in_shape: torch.Size, like: Tensor) -> Tensor:
        if self._matrix is None:
            positions = in_shape[1:].numel()
            basis = torch.eye(positions, dtype=like.dtype, device=like.device)
            with torch.no_grad():
                pooled = self.module(basis.view(positions, 1, *in_shape[1:]))
            self._out_spatial = pooled.shape[2:]
            self._matrix = pooled.reshape(positions, -1).t().contiguous()
        return self._matrix

    def _apply(self, x: Tensor, matrix: Tensor) -> Tensor:
        flat = x.reshape(*x.shape[:2], -1) @ matrix.t()
        return flat.reshape(*x.shape[:2], *self._out_spatial)

    def linear(self, x: Tensor) -> Tensor:
        return self._apply(x, self._build(x.shape[1:], x))

    def abs_linear(self, x: Tensor) -> Tensor:
        return self._apply(x, self._build(x.shape[1:], x).abs())

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        matrix = self._build(in_shape, A)
        return (A.reshape(*A.shape[:2], -1) @ matrix).reshape(A.shape[0], *in_shape)


class FlattenOp(AffineOp):
    def __init__(self, start_dim: int, end_dim: int) -> None:
        self.start_dim, self.end_dim = start_dim, end_dim

    def linear(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    abs_linear = linear

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        return A.reshape(A.shape[0], *in_shape)


class AddOp(BoundOp):
    """The residual addition of two branches."""

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        (l1, u1), (l2, u2) = bounds
        return l1 + l2, u1 + u2

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> tuple[list[Tensor], Optional[Tensor]]:
        return [A, A], None


class ReLUOp(BoundOp):
    """ReLU: exact on stable neurons, the triangle relaxation on unstable ones.

    The lower line's slope is 1 when u > -l and 0 otherwise (CROWN's adaptive choice).
    """

    affine = False

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        lower, upper = bounds[0]
        return lower.clamp(min=0), upper.clamp(min=0)

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> tuple[list[Tensor], Optional[Tensor]]:
        up_slope, up_intercept, low_slope = relu_relaxation(*in_bounds[0])
        A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
        A_in = A_pos * low_slope.unsqueeze(1) + A_neg * up_slope.unsqueeze(1)
        constant = (A_neg * up_intercept.unsqueeze(1)).flatten(2).sum(-1)
        return [A_in], constant


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


def effective_parameter(module: nn.Module, name: str) -> Optional[Tensor]:
    """The parameter as the forward pass uses it: masked by torch.nn.utils.prune or parametrised.

    ``prune`` refreshes ``module.weight`` only in a forward pre-hook, so a stale copy is
    possible; the mask is therefore re-applied here rather than trusting the attribute.
    """
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name:
            return hook.apply_mask(module)
    return getattr(module, name)


def _numeric_padding(module: nn.Conv2d, name: str) -> tuple[int, int]:
    if not isinstance(module.padding, str):
        return tuple(module.padding)  # type: ignore[return-value]
    if module.padding == "valid":
        return (0, 0)
    reach = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
    if any(r % 2 for r in reach):
        raise UnsupportedLayerError(name, module, "asymmetric padding='same'")
    return tuple(r // 2 for r in reach)  # type: ignore[return-value]


def _batch_norm(module: nn.modules.batchnorm._BatchNorm, name: str) -> ChannelAffineOp:
    if module.running_mean is None or module.running_var is None:
        raise UnsupportedLayerError(name, module, "no running statistics (track_running_stats=False)")
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


def _flatten(module: nn.Flatten, name: str) -> FlattenOp:
    if module.start_dim == 0:
        raise UnsupportedLayerError(name, module, "start_dim=0 merges the batch dimension")
    return FlattenOp(module.start_dim, module.end_dim)


def _normalization(module: InputNormalization, name: str) -> ChannelAffineOp:
    return ChannelAffineOp(1 / module.std, -module.mean / module.std)


Converter = Callable[[nn.Module, str], Optional[BoundOp]]
"""Builds a layer's operator; returning None means the layer is the identity."""

_CONVERTERS: dict[type, Converter] = {
    nn.Linear: lambda m, name: LinearOp(effective_parameter(m, "weight"), effective_parameter(m, "bias")),
    nn.Conv2d: Conv2dOp,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.ReLU: lambda m, name: ReLUOp(),
    nn.Flatten: _flatten,
    nn.AvgPool1d: lambda m, name: SpatialMatrixOp(m),
    nn.AvgPool2d: lambda m, name: SpatialMatrixOp(m),
    nn.AdaptiveAvgPool1d: lambda m, name: SpatialMatrixOp(m),
    nn.AdaptiveAvgPool2d: lambda m, name: SpatialMatrixOp(m),
    nn.Identity: lambda m, name: None,
    nn.Dropout: lambda m, name: None,
    nn.Dropout1d: lambda m, name: None,
    nn.Dropout2d: lambda m, name: None,
    InputNormalization: _normalization,
}


def register_layer(cls: type, converter: Converter) -> None:
    """Teach the engine a layer type (subclasses with their own ``forward`` still need their own)."""
    _CONVERTERS[cls] = converter


def convert_layer(module: nn.Module, name: str) -> Optional[BoundOp]:
    """The operator for one leaf module; an UnsupportedLayerError for anything unknown.

    A subclass is accepted only if it inherits ``forward`` unchanged (e.g. a parametrised
    Conv2d); a subclass that overrides it computes something the engine does not know.
    """
    for cls in type(module).__mro__:
        if cls in _CONVERTERS:
            if type(module).forward is not cls.forward:
                raise UnsupportedLayerError(name, module, f"overrides {cls.__name__}.forward")
            return _CONVERTERS[cls](module, name)
    raise UnsupportedLayerError(name, module)
