"""Which filters share a group, and which input channels each group keeps (SR-GKP steps 1–2).

Filters are sorted by kernel smoothness and dealt into groups in snake order, so every group
mixes smooth and rough filters. Inside a group, input channel j carries a "grouped kernel"
GK_j (the group's filters' kernels on j); the kept set K minimises

    cost(K) = Σ_(a<b ∈ K) sim(a, b) − λ · Σ_(q ∉ K) max_(a ∈ K) sim(a, q),   sim = 1 − ‖GK_a − GK_b‖₂,

λ = (#kept pairs)/(#pruned): keep grouped kernels unlike each other that still resemble the ones
dropped. The search is a greedy beam search whose candidates are re-ranked every few steps by
a mix of cost rank and smoothness rank.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def snake_groups(smoothness: Tensor, groups: int) -> list[list[int]]:
    """Filters sorted smoothest first, dealt 0, 1, …, n−1, n−1, …, 0, 0, 1, … into ``groups``."""
    filters = smoothness.numel()
    if groups < 1 or filters % groups:
        raise ValueError(f"{filters} filters cannot be dealt into {groups} equal groups")
    dealt: list[list[int]] = [[] for _ in range(groups)]
    for rank, index in enumerate(torch.argsort(smoothness, stable=True).tolist()):
        lap, offset = divmod(rank, groups)
        dealt[offset if lap % 2 == 0 else groups - 1 - offset].append(index)
    return dealt


def similarity(kernels: Tensor) -> Tensor:
    """sim(a, b) = 1 − ‖GK_a − GK_b‖₂ for grouped kernels given as rows [C_in, D]."""
    flat = kernels.flatten(1).to(torch.float64)
    return 1.0 - torch.cdist(flat, flat)


def selection_cost(sim: Tensor, kept: list[int]) -> float:
    """cost(K) for one kept set, straight from the formula of the module docstring."""
    mask = torch.zeros(sim.shape[0], dtype=torch.bool)
    mask[kept] = True
    inside = sim[mask][:, mask]
    pair_sum = (inside.sum() - inside.diagonal().sum()) / 2
    pruned = int((~mask).sum())
    if pruned == 0:
        return float(pair_sum)
    lam = len(kept) * (len(kept) - 1) / 2 / pruned
    return float(pair_sum - lam * sim[mask][:, ~mask].amax(dim=0).sum())


@dataclass(frozen=True)
class BeamSearch:
    """Greedy beam search for a group's kept input channels.

    ``width`` sets are kept after each step; every ``rerank_every`` steps they are chosen by
    ``(1 − smoothness_weight)·rank(cost) + smoothness_weight·rank(smoothness)`` instead of by
    cost alone (lower smoothness sum = smoother = better). Ties go to the smoother set, then to
    the lower channel indices, so the search is deterministic.
    """

    width: int = 2
    rerank_every: int = 3
    smoothness_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.width < 1 or self.rerank_every < 1 or not 0.0 <= self.smoothness_weight <= 1.0:
            raise ValueError(f"invalid beam search settings {self}")

    def select(self, kernels: Tensor, smoothness: Tensor, keep: int) -> list[int]:
        """Indices (sorted) of the ``keep`` grouped kernels to keep, from rows of ``kernels``."""
        channels = kernels.shape[0]
        if not 1 <= keep <= channels:
            raise ValueError(f"cannot keep {keep} of {channels} input channels")
        sim = similarity(kernels)
        smooth = smoothness.to(torch.float64)
        beam = [torch.zeros(channels, dtype=torch.bool)]
        for step in range(1, keep + 1):
            candidates, costs = _extensions(sim, beam)
            smooth_sums = candidates.to(torch.float64) @ smooth
            if step % self.rerank_every == 0:
                keys = (1 - self.smoothness_weight) * _ranks(costs) + self.smoothness_weight * _ranks(smooth_sums)
            else:
                keys = costs
            order = sorted(range(len(candidates)), key=lambda i: (float(keys[i]), float(smooth_sums[i]), i))
            beam = [candidates[i] for i in order[: self.width]]
        best = min(beam, key=lambda mask: selection_cost(sim, torch.nonzero(mask).flatten().tolist()))
        return torch.nonzero(best).flatten().tolist()


def _extensions(sim: Tensor, beam: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Every set of the beam plus one channel it lacks (duplicates removed) and its cost.

    Costs are updated from the parent set in O(C_in²) memory per beam entry.
    """
    channels = sim.shape[0]
    size = int(beam[0].sum()) + 1
    pruned = channels - size
    lam = size * (size - 1) / 2 / pruned if pruned else 0.0
    found: dict[bytes, tuple[Tensor, Tensor]] = {}
    for mask in beam:
        weights = mask.to(sim.dtype)
        pair_sum = (weights @ sim @ weights - (weights * sim.diagonal()).sum()) / 2
        nearest = sim.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(dim=0)  # max over kept a
        added = torch.nonzero(~mask).flatten()
        grown = mask.unsqueeze(0).repeat(len(added), 1)
        grown[torch.arange(len(added)), added] = True
        pairs = pair_sum + sim[added] @ weights
        coverage = torch.maximum(nearest.unsqueeze(0), sim[added]).masked_fill(grown, 0.0).sum(1)
        for row, cost in zip(grown, pairs - lam * coverage):
            found.setdefault(row.numpy().tobytes(), (row, cost))
    rows, costs = zip(*found.values())
    return torch.stack(rows), torch.stack(costs)


def _ranks(values: Tensor) -> Tensor:
    """0 for the smallest value, 1 for the next, ... (ties share the lower rank's order)."""
    ranks = torch.empty_like(values)
    ranks[torch.argsort(values, stable=True)] = torch.arange(len(values), dtype=values.dtype)
    return ranks
