"""Deterministic index splits: the same labels and seed always give the same disjoint splits."""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch


def validate_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Fractions as floats, each in [0, 1] and together at most 1, or a ValueError naming them."""
    values = tuple(float(f) for f in fractions)
    if not values:
        raise ValueError("fractions must name at least one split, got an empty sequence")
    if any(not math.isfinite(f) or not 0.0 <= f <= 1.0 for f in values):
        raise ValueError(f"fractions must each lie in [0, 1], got {list(fractions)}")
    if sum(values) > 1.0 + 1e-9:
        raise ValueError(
            f"fractions must sum to at most 1, got {list(fractions)} (sum {sum(values):g})"
        )
    return values


def split_indices(
    labels: torch.Tensor, fractions: Sequence[float], seed: int
) -> list[torch.Tensor]:
    """Disjoint, class-stratified index sets, one per fraction, each in a seeded random order.

    Every class is shuffled with ``seed`` and cut at the cumulative fractions, so each split keeps
    the class balance of the whole and no index appears twice; fractions summing to less than 1
    leave the rest unused. Each split is then shuffled too: pools such as mnist5k are stored
    class by class, and an ordered split would make any prefix (a capped validation pass, the
    first evaluation batches) hold one or two classes only.
    """
    values = validate_fractions(fractions)
    labels = torch.as_tensor(labels)
    if labels.numel() == 0:
        raise ValueError("cannot split an empty dataset (no labels)")
    generator = torch.Generator().manual_seed(seed)
    bounds = torch.tensor([0.0, *itertools.accumulate(values)], dtype=torch.float64).clamp(max=1.0)
    parts: list[list[torch.Tensor]] = [[] for _ in values]
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cuts = torch.round(bounds * len(members)).long().tolist()
        for part, start, stop in zip(parts, cuts, cuts[1:]):
            part.append(members[start:stop])
    return [_shuffled(torch.cat(part), generator) for part in parts]


def cap_indices(indices: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """A seeded random subset of at most ``limit`` indices (in random order), for quick runs."""
    if limit is None or limit >= len(indices):
        return indices
    generator = torch.Generator().manual_seed(seed)
    return indices[torch.randperm(len(indices), generator=generator)[:limit]]


def _shuffled(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return indices[torch.randperm(len(indices), generator=generator)]
