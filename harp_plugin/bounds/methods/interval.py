"""Interval bound propagation (IBP) over a bound graph."""
from __future__ import annotations

import torch

from harp_plugin.bounds.errors import BoundError
from harp_plugin.bounds.graph import BoundGraph
from harp_plugin.bounds.operators.base import Interval


def interval_sweep(graph: BoundGraph, box: Interval) -> list[Interval]:
    """IBP bounds of every node, in graph order (index 0 is the input box).

    Centre/radius arithmetic cannot invert bounds, and a NaN reaches the output, so only the
    output is checked; on a NaN the first node that produced one is named.
    """
    bounds = [box]
    for node in graph.nodes[1:]:
        bounds.append(node.op.interval([bounds[i] for i in node.inputs]))
    if torch.isnan(bounds[-1][0]).any() or torch.isnan(bounds[-1][1]).any():
        first = next(i for i, (l, u) in enumerate(bounds) if torch.isnan(l).any() or torch.isnan(u).any())
        raise BoundError(f"bounds at '{graph.nodes[first].name}' contain NaN (check the weights and inputs for NaN/inf)")
    return bounds
