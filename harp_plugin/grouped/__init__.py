"""Grouped kernel pruning (SR-GKP): a k×k conv rebuilt as gather → grouped conv → reorder.

Importing this package also teaches the bound engine and offers Torch-Pruning the layer's
pruner (``customized_pruners=grouped_kernel_pruners()``).
"""
from harp_plugin.grouped import bounds as _bounds  # noqa: F401  (registers the bound operator)
from harp_plugin.grouped.module import GroupedKernelConv2d
from harp_plugin.grouped.pruner import GroupedKernelPruner, grouped_kernel_pruners
from harp_plugin.grouped.search import BeamSearch, selection_cost, similarity, snake_groups
from harp_plugin.grouped.transform import (
    GroupedKernelPruning,
    LayerPlan,
    grouped_kernel_prune,
    plan_layer,
    prunable_convs,
    restore_grouped_kernels,
)

__all__ = [
    "BeamSearch",
    "GroupedKernelConv2d",
    "GroupedKernelPruner",
    "GroupedKernelPruning",
    "LayerPlan",
    "grouped_kernel_prune",
    "grouped_kernel_pruners",
    "plan_layer",
    "prunable_convs",
    "restore_grouped_kernels",
    "selection_cost",
    "similarity",
    "snake_groups",
]
