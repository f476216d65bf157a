"""Kernel smoothness (SR-GKP, Zhong et al., NeurIPS 2023) as a Torch-Pruning importance.

A k×k kernel K is smooth when neighbouring taps carry similar energy:
S(K) = Σ_(i,j) Σ_((i',j') in the 8-neighbourhood of (i,j)) |K_ij² − K_i'j'²|, lower = smoother.
A filter's smoothness is the sum over its kernels. The paper finds that smooth filters carry
the features that survive adversarial perturbations, so the roughest filters go first.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import Tensor, nn

_CONV_OUT = (tp.prune_conv_out_channels,)
_LINEAR_OUT = (tp.prune_linear_out_channels,)

# The eight (row, column) offsets of a tap's neighbourhood.
_NEIGHBOURS: tuple[tuple[int, int], ...] = tuple(
    (dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)
)


def kernel_smoothness(weight: Tensor) -> Tensor:
    """S of every kernel of a conv weight [C_out, C_in, kh, kw] → [C_out, C_in].

    Each ordered (tap, neighbour) pair counts once, so every unordered pair of neighbouring
    taps counts twice, as in the definition. Taps outside the kernel are not neighbours.
    """
    if weight.dim() != 4:
        raise ValueError(f"kernel_smoothness expects a conv weight [C_out, C_in, kh, kw], got shape {tuple(weight.shape)}")
    energy = weight.detach().pow(2)
    rows, cols = energy.shape[-2:]
    total = torch.zeros(energy.shape[:2], dtype=energy.dtype, device=energy.device)
    for dr, dc in _NEIGHBOURS:
        # Pairs (i, j) and (i + dr, j + dc) with both inside the kernel.
        here = energy[..., max(0, -dr):rows - max(0, dr), max(0, -dc):cols - max(0, dc)]
        there = energy[..., max(0, dr):rows - max(0, -dr), max(0, dc):cols - max(0, -dc)]
        if here.numel():
            total += (here - there).abs().sum(dim=(-2, -1))
    return total


def filter_smoothness(weight: Tensor) -> Tensor:
    """S of every filter (the sum over its kernels) → [C_out]."""
    return kernel_smoothness(weight).sum(dim=1)


class KernelSmoothnessImportance(tp.importance.Importance):
    """Higher = smoother (lower S) = keep; optionally mixed with the filters' L2 magnitude.

    Per group member that holds filters (a conv's output channels), the score is
    ``−S / max S + magnitude_weight · ‖W‖₂ / max ‖W‖₂`` (maxima over the layer, so layers are
    comparable under global pruning), averaged over the members. Layers without a spatial
    kernel (Linear, 1×1 convs) have no smoothness: they are ranked by magnitude alone.
    """

    def __init__(self, magnitude_weight: float = 0.0) -> None:
        if magnitude_weight < 0:
            raise ValueError(f"magnitude_weight must be >= 0, got {magnitude_weight}")
        self.magnitude_weight = magnitude_weight

    @torch.no_grad()
    def __call__(self, group: tp.Group, **_: Any) -> Tensor | None:
        total: Tensor | None = None
        members = 0
        for item in group.items:
            layer = item.dep.target.module
            if item.dep.handler in _CONV_OUT and isinstance(layer, nn.Conv2d):
                scores = self._filter_scores(layer.weight)
            elif item.dep.handler in _LINEAR_OUT and isinstance(layer, nn.Linear):
                scores = _normalised(layer.weight.detach().flatten(1).norm(dim=1))
            else:
                continue
            if total is None:
                total = torch.zeros(len(group[0].idxs), dtype=scores.dtype, device=scores.device)
            rows = scores[torch.as_tensor(item.idxs, device=scores.device)]
            total.index_add_(0, torch.as_tensor(item.root_idxs, device=scores.device), rows)
            members += 1
        return None if total is None else total / members

    def _filter_scores(self, weight: Tensor) -> Tensor:
        magnitude = _normalised(weight.detach().flatten(1).norm(dim=1))
        if weight.shape[-2] * weight.shape[-1] < 2:
            return magnitude
        return -_normalised(filter_smoothness(weight)) + self.magnitude_weight * magnitude


def _normalised(values: Tensor) -> Tensor:
    """``values / max(values)``; an all-zero layer stays all zero."""
    peak = values.max()
    return values / peak if peak > 0 else values
