"""Teaches the bound engine GroupedKernelConv2d: it is bounded as its dense equivalent.

The dense Conv2d with zero kernels where input channels were pruned computes the same
function, so its interval and linear bounds are the transformed layer's bounds.
"""
from __future__ import annotations

from harp_plugin.bounds import register_layer
from harp_plugin.bounds.operators.convolution import ConvOp
from harp_plugin.grouped.module import GroupedKernelConv2d


def _grouped_kernel_op(module: GroupedKernelConv2d, name: str) -> ConvOp:
    return ConvOp(module.to_dense(), name)


register_layer(GroupedKernelConv2d, _grouped_kernel_op)
