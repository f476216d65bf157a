"""Backward linear bound propagation (CROWN) over a bound graph.

``backward_lower_bound`` turns a linear function ``A · node`` into a sound lower bound by
propagating A backwards through every operator (relaxing non-linear ones with their input
bounds) and concretising over a box. Stopping at the first non-affine node instead of the
input gives IBP with the specification folded into the trailing affine layers.

``crown_sweep`` computes every node's bounds for full CROWN with as little back-substitution
as soundness allows: a node whose interval bound is already exact (an affine map of the input
box, as the first layer's pre-activations are) or an element-wise map of a tightened bound is
not tightened, and of the others only the neurons still unstable are, sample by sample, in
chunks sized by a memory budget.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from harp_plugin.bounds.graph import BoundGraph
from harp_plugin.bounds.numerics import checked_bounds
from harp_plugin.bounds.operators.base import AffineOp, Interval, RelaxedOp

WORKING_COPIES = 6
"""Coefficient-sized tensors alive at once during a backward pass (A, its two signs, the
products, the result): the memory budget is divided by this and the element size."""


def backward_lower_bound(
    graph: BoundGraph, bounds: list[Interval], target: int, A: Tensor, fold_only: bool = False
) -> Tensor:
    """Lower bound ``(B, K)`` of ``A · node[target]`` for A of shape ``(B, K, *node_shape)``.

    With ``fold_only`` the propagation stops at non-affine nodes and concretises with their
    interval bounds; otherwise it relaxes them and goes down to the input box.
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


def exact_nodes(graph: BoundGraph) -> list[bool]:
    """Whether each node's interval bound is its exact range over the input box.

    The box is exact; element-wise maps and rearrangements keep exactness, and keep a box a
    box; one affine map of a box is exact per element (but no longer a box).
    """
    box, exact = [True], [True]
    for node in graph.nodes[1:]:
        inputs_box = all(box[i] for i in node.inputs)
        inputs_exact = all(exact[i] for i in node.inputs)
        if node.op.elementwise and len(node.inputs) == 1:
            box.append(inputs_box)
            exact.append(inputs_exact)
        else:
            box.append(False)
            exact.append(isinstance(node.op, AffineOp) and inputs_box)
    return exact


def crown_sweep(graph: BoundGraph, box: Interval, budget_bytes: int, intersect: bool = True) -> list[Interval]:
    """Bounds of every node with each relaxed node's input tightened by CROWN, in graph order.

    With ``intersect`` a CROWN bound never replaces a tighter interval bound.
    """
    demands = tightening_demands(graph)
    tight = exact_nodes(graph)
    bounds = [box]
    for index, node in enumerate(graph.nodes[1:], start=1):
        lower, upper = checked_bounds(*node.op.interval([bounds[i] for i in node.inputs]), node.name)
        if not tight[index] and _follows_tight_input(node, tight):
            tight[index] = True
        elif index in demands and not tight[index]:
            consumers = demands[index]
            wanted = torch.ones_like(lower, dtype=torch.bool) if consumers is None else _inexact(consumers, lower, upper)
            lower, upper = _tighten(graph, bounds + [(lower, upper)], index, wanted, budget_bytes, intersect)
            lower, upper = checked_bounds(lower, upper, node.name)
            tight[index] = True
        bounds.append((lower, upper))
    return bounds


def tightening_demands(graph: BoundGraph) -> dict[int, Optional[list[RelaxedOp]]]:
    """Which nodes' bounds a relaxation reads, and where: a list of the relaxed activations
    consuming the node (only their inexact neurons matter), or None when every neuron matters
    (a max pooling reads its input's bounds everywhere, and an activation whose output bounds
    are read everywhere needs its input's everywhere)."""
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(graph.nodes):
        for source in node.inputs:
            consumers.setdefault(source, []).append(index)
    everywhere = [False] * len(graph.nodes)
    demands: dict[int, Optional[list[RelaxedOp]]] = {}
    for index in range(len(graph.nodes) - 1, -1, -1):
        users = [graph.nodes[c] for c in consumers.get(index, [])]
        passes_on = any(
            everywhere[c] and (graph.nodes[c].op.elementwise or isinstance(graph.nodes[c].op, RelaxedOp))
            for c in consumers.get(index, [])
        )
        everywhere[index] = passes_on or any(not u.op.affine and not isinstance(u.op, RelaxedOp) for u in users)
        relaxed = [u.op for u in users if isinstance(u.op, RelaxedOp)]
        if everywhere[index]:
            demands[index] = None
        elif relaxed:
            demands[index] = relaxed
    return demands


def _inexact(ops: list[RelaxedOp], lower: Tensor, upper: Tensor) -> Tensor:
    masks = [op.inexact(lower, upper) for op in ops]
    return torch.stack(masks).any(0) if len(masks) > 1 else masks[0]


def _follows_tight_input(node, tight: list[bool]) -> bool:
    """An element-wise map (affine or a relaxed activation) of an already tightened bound:
    its interval is as tight as back-substitution through it would make it."""
    return len(node.inputs) == 1 and tight[node.inputs[0]] and (node.op.elementwise or isinstance(node.op, RelaxedOp))


def _tighten(
    graph: BoundGraph, bounds: list[Interval], index: int, wanted: Tensor, budget_bytes: int, intersect: bool
) -> Interval:
    """CROWN bounds of the ``wanted`` neurons of node ``index``, sample by sample."""
    lower, upper = bounds[index]
    batch, shape = lower.shape[0], lower.shape[1:]
    flat_lower, flat_upper = lower.flatten(1), upper.flatten(1)
    unstable = wanted.flatten(1)
    counts = unstable.sum(1)
    rows = int(counts.max()) if batch else 0
    if rows == 0:
        return lower, upper
    # each sample's wanted positions first (a stable sort keeps them distinct and ordered)
    positions = unstable.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :rows]
    valid = torch.arange(rows, device=lower.device).unsqueeze(0) < counts.unsqueeze(1)
    widest = max(b[0][0].numel() for b in bounds)
    elements = budget_bytes // (lower.element_size() * WORKING_COPIES)
    batch_chunk = max(1, min(batch, elements // (2 * widest)))
    row_chunk = max(1, elements // (2 * widest * batch_chunk))
    new_lower, new_upper = flat_lower.clone(), flat_upper.clone()
    for b0 in range(0, batch, batch_chunk):
        part = slice(b0, b0 + batch_chunk)
        part_bounds = [(l[part], u[part]) for l, u in bounds]
        for r0 in range(0, rows, row_chunk):
            picks = positions[part, r0:r0 + row_chunk]
            keep = valid[part, r0:r0 + row_chunk]
            crown_lower, crown_upper = _bound_rows(graph, part_bounds, index, picks, shape)
            old_lower, old_upper = flat_lower[part].gather(1, picks), flat_upper[part].gather(1, picks)
            if intersect:
                crown_lower, crown_upper = torch.maximum(crown_lower, old_lower), torch.minimum(crown_upper, old_upper)
            new_lower[part] = new_lower[part].scatter(1, picks, torch.where(keep, crown_lower, old_lower))
            new_upper[part] = new_upper[part].scatter(1, picks, torch.where(keep, crown_upper, old_upper))
    return new_lower.view_as(lower), new_upper.view_as(upper)


def _bound_rows(graph: BoundGraph, bounds: list[Interval], index: int, picks: Tensor, shape: torch.Size) -> Interval:
    """CROWN lower and upper bounds of the picked neurons (per sample) of node ``index``."""
    batch, rows = picks.shape
    A = torch.zeros(batch, 2 * rows, shape.numel(), dtype=bounds[0][0].dtype, device=picks.device)
    ones = torch.ones(batch, rows, 1, dtype=A.dtype, device=A.device)
    A[:, :rows].scatter_(2, picks.unsqueeze(2), ones)
    A[:, rows:].scatter_(2, picks.unsqueeze(2), -ones)
    result = backward_lower_bound(graph, bounds, index, A.view(batch, 2 * rows, *shape))
    return result[:, :rows], -result[:, rows:]

