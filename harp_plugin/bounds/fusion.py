"""A convolution or linear layer and the per-channel affine map right after it (eval-mode
BatchNorm, or the batch-statistics BatchNorm of certified training) bounded as one affine map.

The pair is the same function, ``W·x·s + (b·s + t)`` per output channel, so its interval and
its CROWN coefficients are the same up to rounding, but bounding it as one layer saves the
per-channel map's passes over the activations (IBP) and over the coefficients (CROWN-IBP's
output back-substitution). The weights are folded on every call, from the operators the graph
was just built with, so they are always the model's current ones.
"""
from __future__ import annotations

import copy

from harp_plugin.bounds.graph import BoundGraph, Node
from harp_plugin.bounds.operators.base import AffineOp
from harp_plugin.bounds.operators.convolution import ConvOp
from harp_plugin.bounds.operators.linear import LinearOp
from harp_plugin.bounds.operators.normalization import ChannelAffineOp


def fuse_channel_affine(graph: BoundGraph) -> BoundGraph:
    """The graph with every (conv or linear → per-channel affine) pair, where nothing else reads
    the layer's output, replaced by one layer node named ``"layer+affine"``."""
    consumers = graph.consumers()
    absorbed = {
        node.inputs[0]
        for node in graph.nodes[1:]
        if isinstance(node.op, ChannelAffineOp) and _foldable(graph.nodes[node.inputs[0]], consumers[node.inputs[0]])
    }
    if not absorbed:
        return graph
    fused = BoundGraph()
    new_index = {0: 0}
    for index, node in enumerate(graph.nodes[1:], start=1):
        if index in absorbed:
            continue
        inputs = node.inputs
        op, name = node.op, node.name
        if inputs[0] in absorbed:
            layer = graph.nodes[inputs[0]]
            op, name, inputs = _folded(layer.op, node.op), f"{layer.name}+{node.name}", layer.inputs
        new_index[index] = fused.add(name, op, tuple(new_index[i] for i in inputs), node.module, node.shape)
    return fused


def _foldable(layer: Node, readers: list[int]) -> bool:
    """A conv (channels on dimension 1), or a linear layer with (batch, features) output, read
    by the per-channel map alone."""
    if len(readers) != 1 or layer.shape is None:
        return False
    return isinstance(layer.op, ConvOp) or (isinstance(layer.op, LinearOp) and len(layer.shape) == 2)


def _folded(layer: AffineOp, affine: ChannelAffineOp) -> AffineOp:
    """``affine ∘ layer`` as one layer: output channel k's weights times scale[k], its bias
    ``b[k]·scale[k] + shift[k]``."""
    scale, shift = affine.scale, affine.shift
    weight = layer.weight * scale.view(-1, *([1] * (layer.weight.dim() - 1)))
    bias = layer.bias(layer.weight.shape)
    bias = shift.expand(weight.shape[0]) if bias is None else bias.flatten() * scale + shift
    if isinstance(layer, LinearOp):
        return LinearOp(weight, bias)
    fused = copy.copy(layer)
    fused.weight, fused._bias = weight, bias
    return fused
