"""The compression loss L_c (methods.md §1): parameters per weight, FLOPs per channel.

A layer's cost is its dense cost times the kept share of its outputs and, counting FLOPs,
times the kept share of its inputs. Both shares come from the masks that decide on them:
in channel mode these are Torch-Pruning groups, so a residual stream, a concatenation or a
depthwise conv is counted exactly as the pruned network will have it (a concatenated input
takes each part's share in proportion to its width). Dense FLOPs come from a traced
forward pass: no hard-coded tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.masking.layers import LayerTrace

Terms = tuple[tuple[str, float], ...]  # (mask name, share of the layer's channels it decides on)


@dataclass(frozen=True)
class LayerCost:
    """Dense cost of one layer and which masks decide on its outputs and inputs.

    Without ``outputs`` a layer's outputs are decided by the mask of its own name, if any.
    """

    dense: float
    outputs: Terms = ()
    inputs: Terms = ()

    def output_terms(self, name: str) -> Terms:
        return self.outputs or ((name, 1.0),)


@dataclass(frozen=True)
class CostModel:
    """Cost of a network as a function of its masks' kept fractions."""

    layers: Mapping[str, LayerCost]
    unit: str  # "parameters" or "FLOPs"

    def cost(self, kept: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
        """Σ_l dense_l · share_out(a) · share_in(a); a mask absent from ``kept`` keeps everything."""
        total = torch.zeros((), dtype=torch.float64)
        for name, layer in self.layers.items():
            fraction = _share(layer.output_terms(name), kept) * _share(layer.inputs, kept)
            total = total + layer.dense * fraction
        return total

    def cost_value(self, kept: Mapping[str, float]) -> float:
        """:meth:`cost` in plain Python floats: cheap enough to evaluate thousands of times."""
        total = 0.0
        for name, layer in self.layers.items():
            total += layer.dense * _share_value(layer.output_terms(name), kept) * _share_value(layer.inputs, kept)
        return total

    def compression_loss(self, kept: Mapping[str, torch.Tensor], target_kept: float) -> torch.Tensor:
        """L_c = max(cost(a) / cost(a_t everywhere) − 1, 0): the relative overshoot."""
        budget = self.cost({name: target_kept for name in kept})
        return torch.relu(self.cost(kept) / budget - 1.0).to(torch.get_default_dtype())

    def fixed_layers(self, masks: Iterable[str]) -> list[str]:
        """Layers whose outputs no mask decides on (ignored layers, the classifier)."""
        masks = set(masks)
        return [name for name, layer in self.layers.items() if not layer.outputs and name not in masks]


def _share(terms: Terms, kept: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
    """Σ share·a over the terms, plus the share no mask decides on (kept whole)."""
    total = torch.tensor(1.0 - sum(share for _, share in terms), dtype=torch.float64)
    for name, share in terms:
        value = kept.get(name, 1.0)
        value = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        total = total + share * value.to(torch.float64)
    return total


def _share_value(terms: Terms, kept: Mapping[str, float]) -> float:
    return 1.0 + sum(share * (kept.get(name, 1.0) - 1.0) for name, share in terms)


def parameter_costs(layers: Mapping[str, nn.Module]) -> CostModel:
    """Fine-grained mode: a layer costs its number of weights n_l, all decided by its own mask."""
    return CostModel({name: LayerCost(float(m.weight.numel())) for name, m in layers.items()}, "parameters")


def flop_costs(modules: Mapping[str, nn.Module], traces: Mapping[str, LayerTrace], groups: Iterable) -> CostModel:
    """Channel mode: MACs of every executed Conv/Linear/attention layer under the group masks.

    A depthwise conv's inputs are its outputs (one group), so only the output share counts.
    """
    outputs: dict[nn.Module, list[tuple[str, float]]] = {}
    inputs: dict[nn.Module, list[tuple[str, float]]] = {}
    for group in groups:
        for module, idxs, _ in group.outputs:
            outputs.setdefault(module, []).append((group.name, len(idxs) / _width(module, "out")))
        for module, idxs in group.inputs:
            inputs.setdefault(module, []).append((group.name, len(idxs) / _width(module, "in")))
    costs = {}
    for name, trace in traces.items():
        module = modules[name]
        depthwise = isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels
        costs[name] = LayerCost(
            trace.dense_flops,
            tuple(outputs.get(module, ())),
            () if depthwise and module.groups > 1 else tuple(inputs.get(module, ())),
        )
    return CostModel(costs, "FLOPs")


def _width(module: nn.Module, side: str) -> int:
    if isinstance(module, nn.MultiheadAttention):
        return module.embed_dim
    if isinstance(module, nn.Linear):
        return module.out_features if side == "out" else module.in_features
    return module.out_channels if side == "out" else module.in_channels


def conv_linear_flops(model: nn.Module, example_inputs: torch.Tensor) -> float:
    """Conv/Linear MACs of ``model`` by Torch-Pruning's own layer-wise counter: the quantity a
    HARP FLOPs budget is a share of (the counter's total also has BatchNorm, ReLU and pooling).
    Count on the plain model: with channel masks attached the counter misses masked layers."""
    per_layer = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)[2]
    return float(sum(v for m, v in per_layer.items() if isinstance(m, (nn.Conv2d, nn.Linear))))
