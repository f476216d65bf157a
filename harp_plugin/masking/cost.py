"""The compression loss L_c (methods.md §1): parameters per weight, FLOPs per channel.

A layer's cost is its dense cost times its own kept fraction and, counting FLOPs, times the
kept fraction of its input channels, i.e. the kept output channels of its producers (the
largest one where a residual sum merges several). Producers come from Torch-Pruning's
dependency graph and dense FLOPs from a traced forward pass: no hard-coded tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.masking.layers import LayerTrace, untouched


@dataclass(frozen=True)
class LayerCost:
    """Dense cost of one layer and the layers whose kept outputs are its inputs."""

    dense: float
    producers: tuple[str, ...] = ()


@dataclass(frozen=True)
class CostModel:
    """Cost of a network as a function of its per-layer kept fractions."""

    layers: Mapping[str, LayerCost]
    unit: str  # "parameters" or "FLOPs"

    def cost(self, kept: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
        """Σ_l dense_l · a_l · max_p a_p; a layer absent from ``kept`` keeps everything."""
        total = torch.zeros((), dtype=torch.float64)
        for name, layer in self.layers.items():
            own = _as_tensor(kept.get(name, 1.0))
            inputs = [_as_tensor(kept.get(p, 1.0)) for p in layer.producers]
            fraction = own * torch.stack(inputs).max() if inputs else own
            total = total + layer.dense * fraction.to(torch.float64)
        return total

    def compression_loss(self, kept: Mapping[str, torch.Tensor], target_kept: float) -> torch.Tensor:
        """L_c = max(cost(a) / cost(a_t everywhere) − 1, 0): the relative overshoot."""
        budget = self.cost({name: target_kept for name in kept})
        return torch.relu(self.cost(kept) / budget - 1.0).to(torch.get_default_dtype())


def _as_tensor(value: torch.Tensor | float) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value))


def parameter_costs(layers: Mapping[str, nn.Module]) -> CostModel:
    """Fine-grained mode: a layer costs its number of weights n_l."""
    return CostModel({name: LayerCost(float(m.weight.numel())) for name, m in layers.items()}, "parameters")


def flop_costs(
    model: nn.Module, example_inputs: torch.Tensor, traces: Mapping[str, LayerTrace]
) -> CostModel:
    """Channel mode: MACs of every executed Conv2d/Linear, coupled to its producers."""
    with untouched(model):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    modules = dict(model.named_modules())
    names = {modules[name]: name for name in traces}
    costs: dict[str, LayerCost] = {}
    for name, trace in traces.items():
        layer = modules[name]
        grouped = isinstance(layer, nn.Conv2d) and layer.groups > 1
        producers = () if grouped else _producers(graph, layer, names)
        costs[name] = LayerCost(trace.dense_flops, producers)
    return CostModel(costs, "FLOPs")


def _producers(graph: tp.DependencyGraph, layer: nn.Module, names: Mapping[nn.Module, str]) -> tuple[str, ...]:
    """Layers whose output channels are ``layer``'s input channels (several across a residual sum).

    A grouped conv's input channels are tied to its own outputs, so its cost follows its
    own kept fraction only (counted without producers by the caller).
    """
    handler = graph.get_pruner_of_module(layer).prune_in_channels
    group = graph.get_pruning_group(layer, handler, idxs=[0])
    found = {
        names[dep.target.module]
        for dep, _ in group
        if dep.target.module is not layer
        and dep.target.module in names
        and graph.is_out_channel_pruning_fn(dep.handler)
    }
    return tuple(sorted(found))
