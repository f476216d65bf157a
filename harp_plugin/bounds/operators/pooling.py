"""Pooling and averaging: average pools (any options), adaptive average pools, ``mean``
over non-batch dimensions, and max pooling with a sound linear relaxation."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import AffineOp, Backward, Bound, BoundOp, Interval, PatchesBackward

if TYPE_CHECKING:
    from harp_plugin.bounds.methods.patches import Patches


class SpatialMatrixOp(AffineOp):
    """A linear pooling as the matrix it applies to each channel's positions.

    The matrix is read off the pooling itself on the basis images, so every option
    (padding, ceil_mode, count_include_pad, divisor_override, adaptive bins) is honoured exactly.
    """

    def __init__(self, pool: Callable[[Tensor], Tensor]) -> None:
        self.pool = pool
        self._matrix: Optional[Tensor] = None
        self._out_spatial: Optional[torch.Size] = None

    def _build(self, in_shape: torch.Size, like: Tensor) -> Tensor:
        if self._matrix is None:
            positions = in_shape[1:].numel()
            basis = torch.eye(positions, dtype=like.dtype, device=like.device)
            with torch.no_grad():
                pooled = self.pool(basis.view(positions, 1, *in_shape[1:]))
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


class MeanOp(AffineOp):
    """``x.mean(dims, keepdim)`` over non-batch dimensions."""

    def __init__(self, dims: tuple[int, ...], keepdim: bool, in_shape: torch.Size) -> None:
        self.dims, self.keepdim = dims, keepdim
        self.count = math.prod(in_shape[d] for d in dims)

    def linear(self, x: Tensor) -> Tensor:
        return x.mean(self.dims, keepdim=self.keepdim)

    abs_linear = linear

    def transpose(self, A: Tensor, in_shape: torch.Size) -> Tensor:
        if not self.keepdim:
            for d in sorted(self.dims):
                A = A.unsqueeze(d)
        return (A / self.count).expand(A.shape[0], *in_shape)


def mean_rule(args: tuple, kwargs: dict):
    x = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dims is None or kwargs.get("dtype") is not None:
        raise NoBoundRule("mean over every dimension (the batch included) or with a dtype")
    rank = len(x.shape)
    dims = tuple(sorted({d % rank for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}))
    if 0 in dims:
        raise NoBoundRule("mean over the batch dimension")
    return MeanOp(dims, bool(keepdim), x.shape), [x]


def pool_function(function: Callable):
    """Rule of a functional average pool (``F.avg_pool2d``, ``F.adaptive_avg_pool2d``, …)."""

    def rule(args: tuple, kwargs: dict):
        x, rest = args[0], args[1:]
        return SpatialMatrixOp(lambda t: function(t, *rest, **kwargs)), [x]

    return rule


class MaxPoolOp(BoundOp):
    """Max pooling. IBP: the pool of each end (max is non-decreasing). CROWN, per window with
    j* the element of largest lower bound (ties: of largest upper bound): max ≥ x_j* always; max ≤ x_j* when l_j* ≥ u_i for
    every other element i of the window (the maximum is decided), else max ≤ max_i u_i."""

    affine = False

    def __init__(self, kernel, stride, padding, dilation, ceil_mode: bool, dims: int) -> None:
        pair = lambda v: (v,) * dims if isinstance(v, int) else tuple(v)  # noqa: E731
        self.dims = dims
        self.kernel, self.padding, self.dilation = pair(kernel), pair(padding), pair(dilation)
        self.stride = pair(stride if stride else kernel)
        self.ceil_mode = ceil_mode

    def _pool(self, x: Tensor) -> Tensor:
        function = F.max_pool1d if self.dims == 1 else F.max_pool2d
        return function(x, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        lower, upper = bounds[0]
        return self._pool(lower), self._pool(upper)

    def _windows(self, x: Tensor, out_spatial: torch.Size, fill: float) -> Tensor:
        """(B, C, window elements, output positions) of x padded with ``fill``."""
        x2 = x if self.dims == 2 else x.unsqueeze(-1)
        kernel, stride, dilation = (tuple(v) + (1,) * (2 - self.dims) for v in (self.kernel, self.stride, self.dilation))
        padding = tuple(self.padding) + (0,) * (2 - self.dims)
        outs = tuple(out_spatial) + (1,) * (2 - self.dims)
        extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - size - 2 * p) for o, s, d, k, size, p in zip(outs, stride, dilation, kernel, x2.shape[2:], padding)]
        padded = F.pad(x2, (padding[1], padding[1] + extra[1], padding[0], padding[0] + extra[0]), value=fill)
        batch, channels = padded.shape[:2]
        cols = F.unfold(padded.reshape(batch * channels, 1, *padded.shape[2:]), kernel, dilation, 0, stride)
        return cols.view(batch, channels, cols.shape[1], cols.shape[2])

    def _relaxation(self, lower: Tensor, upper: Tensor, out_spatial: torch.Size) -> tuple[Tensor, Tensor, Tensor]:
        """Per output element: j* as its index inside the window (B, C, 1, L), whether the
        maximum is decided (B, C, L), and the window's largest upper bound (B, C, L)."""
        low_w = self._windows(lower, out_spatial, -math.inf)
        up_w = self._windows(upper, out_spatial, -math.inf)
        # j*: the largest lower bound; among ties (common after ReLU: many l = 0) the largest upper
        ties = low_w == low_w.amax(2, keepdim=True)
        best = torch.where(ties, up_w, torch.full_like(up_w, -math.inf)).argmax(2, keepdim=True)
        best_lower = low_w.gather(2, best).squeeze(2)
        others = up_w.scatter(2, best, -math.inf).amax(2)
        return best, best_lower >= others, up_w.amax(2)

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        lower, upper = in_bounds[0]
        out_spatial = A.shape[3:]
        best, decided, window_upper = self._relaxation(lower, upper, out_spatial)
        positions = torch.arange(lower[0, 0].numel(), device=lower.device, dtype=torch.float64).view(1, 1, *lower.shape[2:])
        index_w = self._windows(positions, out_spatial, -1.0)[0, 0]
        chosen = index_w.expand(*best.shape[:2], *index_w.shape).gather(2, best).squeeze(2).long()
        A_flat = A.flatten(3)
        A_pos, A_neg = A_flat.clamp(min=0), A_flat.clamp(max=0)
        decided_f = decided.unsqueeze(1).to(A.dtype)
        coeff = A_pos + A_neg * decided_f
        constant = (A_neg * (1 - decided_f) * window_upper.unsqueeze(1)).flatten(2).sum(-1)
        A_in = torch.zeros(*A.shape[:3], lower[0, 0].numel(), dtype=A.dtype, device=A.device)
        A_in.scatter_add_(3, chosen.unsqueeze(1).expand_as(coeff), coeff)
        return [A_in.view(*A.shape[:3], *lower.shape[2:])], constant

    def backward_patches(self, patches: "Patches", in_bounds: Sequence[Interval]) -> PatchesBackward:
        """Each kernel entry moves to its window's j*: entry (i, j) of a window over the pool's
        output lands at (i·s + d·a, j·s + d·b) of the window over its input, (a, b) = j*."""
        if self.dims != 2:
            return None
        lower, upper = in_bounds[0]
        out_spatial = self._pool(lower[:1, :1]).shape[2:]
        best, decided, window_upper = self._relaxation(lower, upper, out_spatial)
        per_element = torch.cat([best.squeeze(2).to(lower.dtype), decided.to(lower.dtype), window_upper], dim=1)
        best_w, decided_w, upper_w = patches.windows(per_element.unflatten(2, out_spatial)).chunk(3, dim=3)
        kernels = patches.kernels
        negative = kernels.clamp(max=0)
        moved = kernels - negative * (1 - decided_w)
        constant = patches.row_dot(negative, (1 - decided_w) * upper_w)
        kh, kw = kernels.shape[-2:]
        new_kh, new_kw = ((k - 1) * s + d * (pool - 1) + 1 for k, s, d, pool in zip((kh, kw), self.stride, self.dilation, self.kernel))
        a, b = best_w.long().div(self.kernel[1], rounding_mode="floor"), best_w.long() % self.kernel[1]
        i = torch.arange(kh, device=kernels.device).view(-1, 1) * self.stride[0]
        j = torch.arange(kw, device=kernels.device) * self.stride[1]
        target = (i + self.dilation[0] * a) * new_kw + j + self.dilation[1] * b
        composed = kernels.new_zeros(*kernels.shape[:4], new_kh * new_kw)
        composed.scatter_add_(4, target.expand_as(moved).flatten(4), moved.flatten(4))
        stride = tuple(s * s2 for s, s2 in zip(patches.stride, self.stride))
        padding = tuple(p * s2 + p2 for p, s2, p2 in zip(patches.padding, self.stride, self.padding))
        return [patches.moved(composed.unflatten(4, (new_kh, new_kw)), stride, padding, lower.shape[1:])], constant


def max_pool_module(module: nn.MaxPool1d | nn.MaxPool2d, name: str) -> MaxPoolOp:
    if module.return_indices:
        raise NoBoundRule("return_indices=True")
    dims = 1 if isinstance(module, nn.MaxPool1d) else 2
    return MaxPoolOp(module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, dims)


def max_pool_function(dims: int):
    def rule(args: tuple, kwargs: dict):
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        values = dict(zip(names, args[1:]), **kwargs)
        if values.get("return_indices"):
            raise NoBoundRule("return_indices=True")
        return MaxPoolOp(values["kernel_size"], values.get("stride"), values.get("padding", 0),
                         values.get("dilation", 1), values.get("ceil_mode", False), dims), [args[0]]

    return rule


def avg_pool_module(module: nn.Module, name: str) -> SpatialMatrixOp:
    return SpatialMatrixOp(module)
