"""Learned per-layer kept fractions as a ``pruning_ratio_dict`` for ``tp.MetaPruner``.

A coupled group (e.g. every conv feeding one residual sum) is pruned as one, with the
ratio of whichever member MetaPruner finds first. The learned fractions of a group are
therefore reconciled before they are handed over: every member gets the largest kept
fraction of the group, so no member is cut below what it learned to need.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.masking.layers import untouched

ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def reconciled_ratio_dict(
    model: nn.Module,
    example_inputs: torch.Tensor,
    kept_channels: Mapping[nn.Module, int],
    ignored_layers: Iterable[nn.Module] = (),
) -> dict[nn.Module, float]:
    """Pruning ratio per layer, equal across each coupled group (max kept fraction wins).

    Ratios are 1 − (kept + ½)/n so that MetaPruner's ``int(n·(1 − ratio))`` lands on the
    learned channel count exactly instead of rounding one channel away.
    """
    with untouched(model):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    ratios: dict[nn.Module, float] = {}
    for group in graph.get_all_groups(ignored_layers=list(ignored_layers), root_module_types=ROOT_TYPES):
        members = [
            dep.target.module
            for dep, _ in group
            if graph.is_out_channel_pruning_fn(dep.handler) and dep.target.module in kept_channels
        ]
        if not members:
            continue
        channels = graph.get_out_channels(members[0])
        kept = max(kept_channels[m] / graph.get_out_channels(m) for m in members)
        ratio = max(0.0, 1.0 - (round(kept * channels) + 0.5) / channels)
        ratios.update({m: ratio for m in members})
    return ratios
