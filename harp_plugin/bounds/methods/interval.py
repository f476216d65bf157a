"""Interval bound propagation (IBP) over a bound graph."""
from __future__ import annotations

from harp_plugin.bounds.graph import BoundGraph
from harp_plugin.bounds.operators import Interval
from harp_plugin.bounds.spec import check_bounds


def interval_sweep(graph: BoundGraph, box: Interval) -> list[Interval]:
    """IBP bounds of every node, in graph order (index 0 is the input box)."""
    bounds = [box]
    for node in graph.nodes[1:]:
        lower, upper = node.op.interval([bounds[i] for i in node.inputs])
        check_bounds(lower, upper, node.name)
        bounds.append((lower, upper))
    return bounds
