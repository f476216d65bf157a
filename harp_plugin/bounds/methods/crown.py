"""Backward linear bound propagation (CROWN) over a bound graph.

``backward_lower_bound`` turns a linear function ``A · node`` into a sound lower bound by
propagating A backwards through every operator (relaxing ReLUs with their input bounds) and
concretising over a box. Stopping at the first non-affine node instead of the input gives IBP
with the specification folded into the trailing affine layers (how IBP bounds margins).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from harp_plugin.bounds.graph import BoundGraph
from harp_plugin.bounds.operators import Interval
from harp_plugin.bounds.spec import check_bounds

ELEMENT_BUDGET = 2**25
"""Largest coefficient tensor (elements) built at once when tightening intermediate bounds."""


def backward_lower_bound(
    graph: BoundGraph, bounds: list[Interval], target: int, A: Tensor, fold_only: bool = False
) -> Tensor:
    """Lower bound ``(B, K)`` of ``A · node[target]`` for A of shape ``(B, K, *node_shape)``.

    With ``fold_only`` the propagation stops at non-affine nodes and concretises with their
    interval bounds; otherwise it relaxes ReLUs and goes down to the input box.
    """
    pending: dict[int, Tensor] = {target: A}
    total: Optional[Tensor] = None
    for index in range(target, -1, -1):
        coeffs = pending.pop(index, None)
        if coeffs is None:
            continue
        node = graph.nodes[index]
        if index == 0 or (fold_only and not node.op.affine):
            term = concretise(coeffs, bounds[index])
        else:
            coeffs_in, term = node.op.backward(coeffs, [bounds[i] for i in node.inputs])
            for source, contribution in zip(node.inputs, coeffs_in):
                pending[source] = pending[source] + contribution if source in pending else contribution
        if term is not None:
            total = term if total is None else total + term
    assert total is not None, "every backward path ends at a concretised node"
    return total


def concretise(A: Tensor, box: Interval) -> Tensor:
    """min over the box of A·x: positive coefficients take the lower end, negative the upper."""
    lower, upper = (b.unsqueeze(1) for b in box)
    return (A.clamp(min=0) * lower + A.clamp(max=0) * upper).flatten(2).sum(-1)


def crown_sweep(graph: BoundGraph, box: Interval, intersect: bool = True) -> list[Interval]:
    """Bounds of every node with each ReLU's input tightened by CROWN, in graph order.

    Each node first gets the interval bound of its (already tightened) inputs; only neurons
    that are still unstable are then tightened, since a stable neuron's relaxation is exact.
    With ``intersect`` a CROWN bound never replaces a tighter interval bound.
    """
    relu_inputs = {graph.nodes[i].inputs[0] for i in graph.relu_nodes}
    bounds = [box]
    for index, node in enumerate(graph.nodes[1:], start=1):
        lower, upper = node.op.interval([bounds[i] for i in node.inputs])
        if index in relu_inputs:
            lower, upper = _tighten(graph, bounds + [(lower, upper)], index, intersect)
        check_bounds(lower, upper, node.name)
        bounds.append((lower, upper))
    return bounds


def _tighten(graph: BoundGraph, bounds: list[Interval], index: int, intersect: bool) -> Interval:
    lower, upper = bounds[index]
    batch, shape = lower.shape[0], lower.shape[1:]
    flat_lower, flat_upper = lower.flatten(1), upper.flatten(1)
    unstable = ((flat_lower < 0) & (flat_upper > 0)).any(0).nonzero().flatten()
    if unstable.numel() == 0:
        return lower, upper
    widest = max(b[0][0].numel() for b in bounds)
    chunk = max(1, ELEMENT_BUDGET // (2 * batch * widest))
    new_lower, new_upper = flat_lower.clone(), flat_upper.clone()
    for start in range(0, unstable.numel(), chunk):
        positions = unstable[start:start + chunk]
        rows = positions.numel()
        A = torch.zeros(batch, 2 * rows, shape.numel(), dtype=lower.dtype, device=lower.device)
        picks = torch.arange(rows, device=lower.device)
        A[:, picks, positions] = 1.0
        A[:, picks + rows, positions] = -1.0
        result = backward_lower_bound(graph, bounds, index, A.view(batch, 2 * rows, *shape))
        crown_lower, crown_upper = result[:, :rows], -result[:, rows:]
        if intersect:
            crown_lower = torch.maximum(crown_lower, flat_lower[:, positions])
            crown_upper = torch.minimum(crown_upper, flat_upper[:, positions])
        new_lower[:, positions], new_upper[:, positions] = crown_lower, crown_upper
    return new_lower.view_as(lower), new_upper.view_as(upper)
