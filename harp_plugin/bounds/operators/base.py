"""The contract every bound operator keeps, and the pieces several operator families share.

An operator bounds one node of the graph:

* ``interval(bounds)``: interval bound propagation (IBP) of its input intervals;
* ``backward(A, in_bounds)``: given coefficients ``A`` of shape ``(B, K, *out_shape)`` of a
  linear function of its output, the coefficients on each input and the constant term of a
  *lower* bound of that function (CROWN). Upper bounds are lower bounds of ``-A``.
* ``backward_patches(patches, in_bounds)``: the same on coefficients kept as per-neuron
  kernels over windows (:mod:`harp_plugin.bounds.methods.patches`), for the operators that map
  windows to windows; None (the default) makes CROWN use the dense form for this operator.

Parameters are read when the operator is built (the graph is rebuilt on every call), always
through the effective weight, so pruned, masked and parametrised layers are bounded as they
compute.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

if TYPE_CHECKING:
    from harp_plugin.bounds.methods.patches import Patches

Interval = tuple[Tensor, Tensor]
Backward = tuple[list[Tensor], Optional[Tensor]]
PatchesBackward = Optional[tuple[list["Patches"], Optional[Tensor]]]


class BoundOp(abc.ABC):
    """One node's transfer function for intervals (IBP) and for linear bounds (CROWN)."""

    affine: bool = True
    """Whether the node is affine in its inputs (IBP folds the specification through those)."""

    elementwise: bool = False
    """Whether each output element depends on one input element only, by an increasing or
    decreasing affine map or a rearrangement: exact interval bounds stay exact through it."""

    @abc.abstractmethod
    def interval(self, bounds: Sequence[Interval]) -> Interval:
        """Bounds of the output given bounds of each input."""

    @abc.abstractmethod
    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        """Coefficients on each input and the constant (``(B, K)`` or None) of a lower bound."""

    def backward_patches(self, patches: "Patches", in_bounds: Sequence[Interval]) -> PatchesBackward:
        """``backward`` on patch coefficients; None where this operator has no patches rule."""
        return None


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

    spatially_uniform: bool = False
    """Whether the map is element-wise with the same factor and constant at every position of
    a channel: it then applies to patch kernels exactly as to dense coefficients."""

    def bias(self, out_shape: torch.Size) -> Optional[Tensor]:
        """The constant b, broadcastable to ``out_shape``; None when there is none."""
        return None

    def transpose_patches(self, patches: "Patches", in_shape: torch.Size) -> Optional["Patches"]:
        """Lᵀ on patch coefficients; None where L has no patches form."""
        if not self.spatially_uniform:
            return None
        kernels = patches.kernels
        return patches.replaced(self.transpose(kernels.flatten(0, 2), in_shape).view_as(kernels))

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        lower, upper = bounds[0]
        centre = self.linear((upper + lower) / 2)
        radius = self.abs_linear((upper - lower) / 2)
        b = self.bias(centre.shape[1:])
        if b is not None:
            centre = centre + b
        return centre - radius, centre + radius

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        batch, rows, out_shape = A.shape[0], A.shape[1], A.shape[2:]
        in_shape = in_bounds[0][0].shape[1:]
        A_in = self.transpose(A.reshape(batch * rows, *out_shape), in_shape)
        b = self.bias(out_shape)
        return [A_in.reshape(batch, rows, *in_shape)], None if b is None else _bias_dot(A, b, out_shape)

    def backward_patches(self, patches: "Patches", in_bounds: Sequence[Interval]) -> PatchesBackward:
        moved = self.transpose_patches(patches, in_bounds[0][0].shape[1:])
        if moved is None:
            return None
        # kernel entries outside the level are zero, so the bias is summed over the window's inside only
        b = self.bias(patches.kernels.shape[3:])
        return [moved], None if b is None else patches.channel_dot(b)


class RelaxedOp(BoundOp):
    """An element-wise non-linearity bounded between two lines per neuron (CROWN's relaxation).

    Subclasses give ``lines(lower, upper)``: slope and intercept of the lower and of the upper
    line, each valid on [lower, upper]. The function must be non-decreasing (so IBP is the
    function at the ends).
    """

    affine = False

    @abc.abstractmethod
    def function(self, x: Tensor) -> Tensor:
        """The non-linearity itself."""

    @abc.abstractmethod
    def lines(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(lower slope, lower intercept, upper slope, upper intercept), shaped like ``lower``."""

    @abc.abstractmethod
    def inexact(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Where the relaxation is not exact (so tighter input bounds would tighten it)."""

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        lower, upper = bounds[0]
        return self.function(lower), self.function(upper)

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        low_slope, low_icpt, up_slope, up_icpt = self.lines(*in_bounds[0])
        # A⁺·low + A⁻·up = A·low + A⁻·(up − low): one clamp and one fused multiply-add over A, and
        # the intercepts as per-sample dot products (no coefficient-sized temporaries)
        negative = A.clamp(max=0)
        A_in = torch.addcmul(A * low_slope.unsqueeze(1), negative, (up_slope - low_slope).unsqueeze(1))
        return [A_in], _row_dot(A, low_icpt) + _row_dot(negative, up_icpt - low_icpt)

    def backward_patches(self, patches: "Patches", in_bounds: Sequence[Interval]) -> PatchesBackward:
        lines = self.lines(*in_bounds[0])
        low_slope, low_icpt, up_slope, up_icpt = patches.windows(torch.cat(lines, dim=1)).chunk(len(lines), dim=3)
        # A⁺·low + A⁻·up = A·up + A⁺·(low − up), on the windows shared by each position's rows
        kernels = patches.kernels
        positive = kernels.clamp(min=0)
        moved = torch.addcmul(kernels * up_slope, positive, low_slope - up_slope)
        constant = patches.row_dot(kernels, up_icpt) + patches.row_dot(positive, low_icpt - up_icpt)
        return [patches.replaced(moved)], constant


def _bias_dot(A: Tensor, b: Tensor, out_shape: torch.Size) -> Tensor:
    """``(B, K)``: each row of A ``(B, K, *out_shape)`` dotted with b broadcast to ``out_shape``
    (a matrix-vector product instead of a coefficient-sized product; in the dtype ``A * b``
    would have, so a 0-dim float64 constant does not promote float32 coefficients)."""
    dtype = torch.result_type(A, b)
    return A.reshape(*A.shape[:2], -1).to(dtype) @ b.expand(out_shape).reshape(-1).to(dtype)


def _row_dot(A: Tensor, values: Tensor) -> Tensor:
    """``(B, K)``: each row of A ``(B, K, *shape)`` dotted with its sample's ``values`` ``(B, *shape)``."""
    return torch.bmm(A.flatten(2), values.flatten(1).unsqueeze(2)).squeeze(2)


def effective_parameter(module: nn.Module, name: str) -> Optional[Tensor]:
    """The parameter as the forward pass uses it: masked by torch.nn.utils.prune or parametrised.

    ``prune`` refreshes ``module.weight`` only in a forward pre-hook, so a stale copy is
    possible; the mask is therefore re-applied here rather than trusting the attribute.
    """
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name:
            return hook.apply_mask(module)
    return getattr(module, name)


@dataclass(frozen=True)
class Bound:
    """A bounded tensor argument of a traced call: its node's index and its shape (batch first)."""

    index: int
    shape: torch.Size


Rule = Callable[[tuple, dict], tuple[Optional[BoundOp], list[Bound]]]
"""Bound rule of a traced function or method call: from the call's arguments (``Bound`` for
bounded tensors, plain values for constants) to the operator (None = the identity) and the
bounded arguments it reads, in the order ``interval``/``backward`` receive them."""


def bounded(args: Sequence) -> list[Bound]:
    """The bounded tensors among ``args``, in order."""
    return [a for a in args if isinstance(a, Bound)]
