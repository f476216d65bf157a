"""Torch-Pruning support for GroupedKernelConv2d: channel removal that keeps the output exact.

A grouped Conv2d needs the same number of filters and of input channels in every group, but
Torch-Pruning removes any set of channels. So each group keeps what survives and is padded up
to the fullest group with zero kernels (padding filters no output selects; padding inputs
that gather channel 0 through zero weights). The remaining outputs are exactly what they
were; the cost falls when removals are balanced across groups and otherwise by the fullest
group's share. Register it with ``customized_pruners=grouped_kernel_pruners()``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.grouped.module import GroupedKernelConv2d


class GroupedKernelPruner(tp.pruner.function.BasePruningFunc):
    """Out-channel and in-channel removal for :class:`GroupedKernelConv2d`."""

    TARGET_MODULES = GroupedKernelConv2d

    @torch.no_grad()
    def prune_out_channels(self, layer: GroupedKernelConv2d, idxs: Sequence[int]) -> GroupedKernelConv2d:
        removed = set(int(i) for i in idxs)
        kept_outputs = [o for o in range(layer.out_channels) if o not in removed]
        per_group = layer.conv.out_channels // layer.groups
        positions = layer.out_index.tolist()
        members = [[p for p in (positions[o] for o in kept_outputs) if p // per_group == g] for g in range(layer.groups)]
        width = max(len(m) for m in members)
        selected: list[int] = []
        for group, live in enumerate(members):
            spare = [p for p in range(group * per_group, (group + 1) * per_group) if p not in live]
            selected += live + spare[: width - len(live)]
        new_position = {old: new for new, old in enumerate(selected)}
        live_positions = {positions[o] for o in kept_outputs}
        padding = [new_position[p] for p in selected if p not in live_positions]
        index = torch.tensor(selected, device=layer.conv.weight.device)
        conv = layer.conv
        conv.weight = nn.Parameter(conv.weight[index].clone(), requires_grad=conv.weight.requires_grad)
        conv.weight[padding] = 0.0
        if conv.bias is not None:
            conv.bias = nn.Parameter(conv.bias[index].clone(), requires_grad=conv.bias.requires_grad)
            conv.bias[padding] = 0.0
        conv.out_channels = len(selected)
        layer.out_index = torch.tensor([new_position[positions[o]] for o in kept_outputs], device=index.device)
        layer.out_channels = len(kept_outputs)
        return layer

    @torch.no_grad()
    def prune_in_channels(self, layer: GroupedKernelConv2d, idxs: Sequence[int]) -> GroupedKernelConv2d:
        removed = sorted(set(int(i) for i in idxs))
        shift = torch.zeros(layer.in_channels, dtype=torch.long)
        shift[removed] = 1
        renumbered = torch.arange(layer.in_channels) - shift.cumsum(0)
        keep = layer.kept_per_group
        groups = [layer.in_index[g * keep:(g + 1) * keep].tolist() for g in range(layer.groups)]
        live = [[slot for slot, c in enumerate(channels) if not shift[c]] for channels in groups]
        width = max(1, max(len(slots) for slots in live))
        conv = layer.conv
        weight = conv.weight.new_zeros(conv.out_channels, width, *conv.weight.shape[2:])
        per_group = conv.out_channels // layer.groups
        in_index: list[int] = []
        for group, slots in enumerate(live):
            rows = slice(group * per_group, (group + 1) * per_group)
            weight[rows, : len(slots)] = conv.weight[rows][:, slots]
            in_index += [int(renumbered[groups[group][s]]) for s in slots] + [0] * (width - len(slots))
        conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
        conv.in_channels = width * layer.groups
        layer.in_index = torch.tensor(in_index, device=weight.device)
        layer.in_channels -= len(removed)
        return layer

    def get_out_channels(self, layer: GroupedKernelConv2d) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: GroupedKernelConv2d) -> int:
        return layer.in_channels


def grouped_kernel_pruners() -> dict[type, tp.pruner.function.BasePruningFunc]:
    """``customized_pruners`` for ``tp.MetaPruner`` / ``DependencyGraph.build_dependency``."""
    return {GroupedKernelConv2d: GroupedKernelPruner()}

