"""Interval bound propagation (IBP) over a bound graph, at about the cost of two forward passes.

An affine layer maps an interval in centre/radius form, ``W·c + b`` and ``|W|·r``: two passes
of the layer. Each node keeps its interval in the form its operator produced (centre/radius
after an affine layer, lower/upper after an activation), and the other form is computed only
when something reads it; a convolution or linear layer reads a lower/upper input as its sum
and width with halved weights (no halving pass), and adds its bias inside the layer call. A
ReLU's input bounds (its pre-activations) are materialised only if read. Without autograd,
fresh intermediate tensors are updated in place instead of allocating new ones: a ReLU's
output read only by the next layer becomes that layer's (sum, width) input in its own buffers.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from harp_plugin.bounds.errors import BoundError
from harp_plugin.bounds.graph import BoundGraph
from harp_plugin.bounds.operators.activation import ReLUOp
from harp_plugin.bounds.operators.arithmetic import AddOp
from harp_plugin.bounds.operators.base import AffineOp, BoundOp, Interval
from harp_plugin.bounds.operators.convolution import ConvOp
from harp_plugin.bounds.operators.linear import LinearOp
from harp_plugin.bounds.operators.reshape import RearrangeOp

_CONV = {1: F.conv1d, 2: F.conv2d}


class NodeInterval:
    """One node's interval: lower/upper, or centre/radius with lower/upper computed on first read.

    ``owned``: the lower/upper tensors were created by the sweep for this node alone (not views
    of the input or of another node), so the node's only reader may reuse them.
    """

    __slots__ = ("_lower", "_upper", "centre", "radius", "owned", "_sum_width")

    def __init__(
        self, lower: Optional[Tensor] = None, upper: Optional[Tensor] = None,
        centre: Optional[Tensor] = None, radius: Optional[Tensor] = None, owned: bool = False,
    ) -> None:
        self._lower, self._upper, self.centre, self.radius = lower, upper, centre, radius
        self.owned = owned
        self._sum_width: Optional[Interval] = None

    @property
    def has_bounds(self) -> bool:
        return self._lower is not None or self._sum_width is not None

    def bounds(self) -> Interval:
        if self._sum_width is not None:
            total, width = self._sum_width
            self._lower, self._upper, self._sum_width = (total - width) / 2, (total + width) / 2, None
        elif self._lower is None:
            self._lower, self._upper = self.centre - self.radius, self.centre + self.radius
        return self._lower, self._upper

    def sum_width(self, reuse: bool) -> Interval:
        """``(u + l, u − l)``; with ``reuse`` (an owned node read by nobody else) computed in the
        node's own buffers, the node then keeping that form."""
        if self._sum_width is not None:
            return self._sum_width
        lower, upper = self.bounds()
        if not (reuse and self.owned):
            return upper + lower, upper - lower
        width = upper.sub_(lower)
        self._sum_width = torch.add(width, lower, alpha=2, out=lower), width
        self._lower = self._upper = None
        return self._sum_width

    def centre_radius(self) -> Interval:
        if self.centre is None:
            lower, upper = self.bounds()
            return (upper + lower) / 2, (upper - lower) / 2
        return self.centre, self.radius

    def mapped(self, function: Callable[[Tensor], Tensor]) -> "NodeInterval":
        """The interval of a rearrangement of the elements (in the form it is stored in)."""
        if self.centre is not None:
            return NodeInterval(centre=function(self.centre), radius=function(self.radius))
        return NodeInterval(*map(function, self.bounds()))


class IntervalBounds(Sequence[Interval]):
    """Every node's (lower, upper), in graph order, each materialised when first read."""

    def __init__(self, values: list[NodeInterval]) -> None:
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [value.bounds() for value in self._values[index]]
        return self._values[index].bounds()


def interval_sweep(graph: BoundGraph, box: Interval, keep_all: bool = True) -> IntervalBounds:
    """IBP bounds of every node, in graph order (index 0 is the input box).

    Without ``keep_all`` only the bounds that folding the specification into the output reads
    (:func:`_read_after_sweep`) and the pre-activations are guaranteed unchanged; the others may be
    returned recomputed from (sum, width), equal up to rounding.

    Centre/radius arithmetic cannot invert bounds, and a NaN reaches the output, so only the
    output is checked; on a NaN the first node that produced one is named.
    """
    in_place = not torch.is_grad_enabled()
    consumers = graph.consumers()
    kept = set(range(len(graph.nodes))) if keep_all else _read_after_sweep(graph)
    values = [NodeInterval(*box)]
    for node in graph.nodes[1:]:
        reuse = in_place and len(node.inputs) == 1 and len(consumers[node.inputs[0]]) == 1 and node.inputs[0] not in kept
        values.append(_propagate(node.op, [values[i] for i in node.inputs], in_place, reuse))
    bounds = IntervalBounds(values)
    if torch.isnan(bounds[-1][0]).any() or torch.isnan(bounds[-1][1]).any():
        first = next(i for i, (l, u) in enumerate(bounds) if torch.isnan(l).any() or torch.isnan(u).any())
        raise BoundError(f"bounds at '{graph.nodes[first].name}' contain NaN (check the weights and inputs for NaN/inf)")
    return bounds


def _read_after_sweep(graph: BoundGraph) -> set[int]:
    """The output and, walking back from it through affine nodes, every node reached: what
    folding a specification into the trailing affine layers reads."""
    found, stack = set(), [len(graph.nodes) - 1]
    while stack:
        index = stack.pop()
        if index not in found:
            found.add(index)
            op = graph.nodes[index].op
            if op is not None and op.affine:
                stack.extend(graph.nodes[index].inputs)
    return found


def _propagate(op: BoundOp, inputs: list[NodeInterval], in_place: bool, reuse: bool) -> NodeInterval:
    if isinstance(op, (ConvOp, LinearOp)):
        return _weighted(op, inputs[0], reuse)
    if isinstance(op, AffineOp):
        centre, radius = inputs[0].centre_radius()
        centre = op.linear(centre)
        bias = op.bias(centre.shape[1:])
        return NodeInterval(centre=centre if bias is None else centre + bias, radius=op.abs_linear(radius))
    if isinstance(op, ReLUOp):
        return _relu(inputs[0], in_place)
    if isinstance(op, RearrangeOp):
        return inputs[0].mapped(op.apply)
    if isinstance(op, AddOp) and not any(value.has_bounds for value in inputs):
        (c1, r1), (c2, r2) = (value.centre_radius() for value in inputs)
        return NodeInterval(centre=c1 + c2 if op.sign > 0 else c1 - c2, radius=r1 + r2)
    return NodeInterval(*op.interval([value.bounds() for value in inputs]))


def _weighted(op: ConvOp | LinearOp, value: NodeInterval, reuse: bool) -> NodeInterval:
    """``W·c + b`` and ``|W|·r`` as two calls of the layer (bias inside the first); a
    lower/upper input is read as ``(u + l, u − l)`` with the weights halved (exact in binary)."""
    weight, bias = op.weight, op.bias(op.weight.shape)
    if bias is not None:
        bias = bias.flatten()
    if value.centre is not None:
        centre, radius = value.centre, value.radius
    else:
        centre, radius = value.sum_width(reuse)
        weight = weight / 2
    if isinstance(op, LinearOp):
        return NodeInterval(centre=F.linear(centre, weight, bias), radius=F.linear(radius, weight.abs()))
    return NodeInterval(centre=_convolve(op, centre, weight, bias), radius=_convolve(op, radius, weight.abs(), None))


def _convolve(op: ConvOp, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    return _CONV[op.dims](x, weight, bias, op.stride, op.padding, op.dilation, op.groups)


def _relu(value: NodeInterval, in_place: bool) -> NodeInterval:
    """ReLU of both ends. From centre/radius the ends are fresh tensors, rectified in place
    (the input's own lower/upper are left to be computed only if read)."""
    if value.has_bounds or not in_place:
        lower, upper = value.bounds()
        return NodeInterval(torch.relu(lower), torch.relu(upper), owned=True)
    lower, upper = torch.sub(value.centre, value.radius).relu_(), torch.add(value.centre, value.radius).relu_()
    return NodeInterval(lower, upper, owned=True)
