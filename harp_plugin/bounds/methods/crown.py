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
from harp_plugin.bounds.methods.patches import Patches
from harp_plugin.bounds.numerics import checked_bounds
from harp_plugin.bounds.operators.base import AffineOp, BoundOp, Interval, RelaxedOp

WORKING_COPIES = 8
"""Coefficient-sized tensors alive at once during a backward pass (A, its two signs, the
products, the result, a pending sum): the memory budget is divided by this and the element
size (with 6, small_cnn's 32-image full CROWN peaked above its budget)."""


def backward_lower_bound(
    graph: BoundGraph, bounds: list[Interval], target: int, A: Tensor | Patches, fold_only: bool = False
) -> Tensor:
    """Lower bound ``(B, K)`` of ``A · node[target]`` for A of shape ``(B, K, *node_shape)``
    (or patches on that node: they stay patches through the operators with a patches rule).

    With ``fold_only`` the propagation stops at non-affine nodes and concretises with their
    interval bounds; otherwise it relaxes them and goes down to the input box.
    """
    pending: dict[int, Tensor | Patches] = {target: A}
    total: Optional[Tensor] = None
    for index in range(target, -1, -1):
        coeffs = pending.pop(index, None)
        if coeffs is None:
            continue
        node = graph.nodes[index]
        coeffs_in: list[Tensor | Patches] = []
        if index == 0:
            term = coeffs.concretise(bounds[0]) if isinstance(coeffs, Patches) else concretise(coeffs, bounds[0])
        elif fold_only and not node.op.affine:
            term = concretise(coeffs, bounds[index])
        else:
            coeffs_in, term = _backward(node.op, coeffs, [bounds[i] for i in node.inputs], bounds[index][0].shape[1:])
        for source, contribution in zip(node.inputs, coeffs_in):
            shape = bounds[source][0].shape[1:]
            if isinstance(contribution, Patches) and contribution.larger_than_dense(shape):
                contribution = contribution.to_dense(shape)
            pending[source] = _sum(pending[source], contribution, shape) if source in pending else contribution
        if term is not None:
            total = term if total is None else total + term
    assert total is not None, "every backward path ends at a concretised node"
    return total


def _backward(op: BoundOp, coeffs: Tensor | Patches, in_bounds: list[Interval], shape: torch.Size):
    """One operator's backward step, on patches where it has a patches rule, else dense."""
    if isinstance(coeffs, Patches):
        found = op.backward_patches(coeffs, in_bounds)
        if found is not None:
            return found
        coeffs = coeffs.to_dense(shape)
    return op.backward(coeffs, in_bounds)


def _sum(a: Tensor | Patches, b: Tensor | Patches, shape: torch.Size) -> Tensor | Patches:
    """Two coefficient sets on one node: patches while both are patches of one stride."""
    if isinstance(a, Patches) and isinstance(b, Patches):
        both = a.plus(b)
        if both is not None:
            return both
    dense = [c.to_dense(shape) if isinstance(c, Patches) else c for c in (a, b)]
    return dense[0] + dense[1]


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


def crown_sweep(
    graph: BoundGraph, box: Interval, budget_bytes: int, intersect: bool = True, patches: bool = True
) -> list[Interval]:
    """Bounds of every node with each relaxed node's input tightened by CROWN, in graph order.

    With ``intersect`` a CROWN bound never replaces a tighter interval bound. With ``patches``
    the coefficients of image-shaped (C, H, W) nodes' neurons start as per-neuron kernels
    (:mod:`harp_plugin.bounds.methods.patches`); without, they are dense from the start.
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
            lower, upper = _tighten(graph, bounds + [(lower, upper)], index, wanted, budget_bytes, intersect, patches)
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
    graph: BoundGraph, bounds: list[Interval], index: int, wanted: Tensor, budget_bytes: int, intersect: bool,
    patches: bool,
) -> Interval:
    """CROWN bounds of the ``wanted`` neurons of node ``index``, sample by sample.

    The work comes in units: with patches, a spatial position of a (C, H, W) node with any
    wanted neuron (its wanted channels are bounded together, sharing one window per level);
    otherwise one neuron.
    """
    lower, upper = bounds[index]
    batch, shape = lower.shape[0], lower.shape[1:]
    by_position = patches and len(shape) == 3
    group = shape[0] if by_position else 1  # neurons per unit
    flat_wanted = wanted.view(batch, group, -1)
    units = flat_wanted.any(1)
    counts = units.sum(1)
    count = int(counts.max()) if batch else 0
    if count == 0:
        return lower, upper
    # each sample's units first (a stable sort keeps them distinct and ordered)
    picks = units.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :count]
    valid = torch.arange(count, device=lower.device).unsqueeze(0) < counts.unsqueeze(1)
    widest = max(b[0][0].numel() for b in bounds)
    elements = budget_bytes // (lower.element_size() * WORKING_COPIES)
    batch_chunk = max(1, min(batch, elements // (2 * group * widest)))
    unit_chunk = max(1, elements // (2 * group * widest * batch_chunk))
    old_lower, old_upper = lower.reshape(batch, -1), upper.reshape(batch, -1)
    new_lower, new_upper = old_lower.clone(), old_upper.clone()
    for b0 in range(0, batch, batch_chunk):
        part = slice(b0, b0 + batch_chunk)
        part_bounds = [(l[part], u[part]) for l, u in bounds]
        for u0 in range(0, count, unit_chunk):
            chunk = picks[part, u0:u0 + unit_chunk]
            here = flat_wanted[part].gather(2, chunk.unsqueeze(1).expand(-1, group, -1))
            here &= valid[part, u0:u0 + unit_chunk].unsqueeze(1)
            rows = int(here.sum(1).max())
            if rows == 0:  # every sample of this part has fewer units
                continue
            # the wanted members of each unit first: (batch, rows, units)
            members = here.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :rows]
            keep = here.gather(1, members)
            at = (members * units.shape[1] + chunk.unsqueeze(1)).flatten(1)
            crown_lower, crown_upper = _bound_units(graph, part_bounds, index, chunk, members, shape, by_position)
            was_lower, was_upper = old_lower[part].gather(1, at), old_upper[part].gather(1, at)
            crown_lower, crown_upper = crown_lower.flatten(1), crown_upper.flatten(1)
            if intersect:
                crown_lower, crown_upper = torch.maximum(crown_lower, was_lower), torch.minimum(crown_upper, was_upper)
            keep = keep.flatten(1)
            new_lower[part] = new_lower[part].scatter(1, at, torch.where(keep, crown_lower, was_lower))
            new_upper[part] = new_upper[part].scatter(1, at, torch.where(keep, crown_upper, was_upper))
    return new_lower.view_as(lower), new_upper.view_as(upper)


def _bound_units(
    graph: BoundGraph, bounds: list[Interval], index: int, picks: Tensor, members: Tensor, shape: torch.Size,
    by_position: bool,
) -> Interval:
    """CROWN lower and upper bounds (B, rows, units) of node ``index``'s neurons: channels
    ``members`` (B, rows, units) at spatial positions ``picks`` (B, units) as patches, or the
    single neurons ``picks`` (rows = 1) with dense coefficients."""
    batch, units = picks.shape
    dtype = bounds[0][0].dtype
    if by_position:
        start = Patches.of_positions(picks, members.transpose(1, 2), shape, dtype)
        result = backward_lower_bound(graph, bounds, index, start).view(batch, units, 2, -1).permute(2, 0, 3, 1)
        return result[0], -result[1]
    A = torch.zeros(batch, 2 * units, shape.numel(), dtype=dtype, device=picks.device)
    ones = torch.ones(batch, units, 1, dtype=dtype, device=picks.device)
    A[:, :units].scatter_(2, picks.unsqueeze(2), ones)
    A[:, units:].scatter_(2, picks.unsqueeze(2), -ones)
    result = backward_lower_bound(graph, bounds, index, A.view(batch, 2 * units, *shape))
    return result[:, :units].unsqueeze(1), -result[:, units:].unsqueeze(1)
