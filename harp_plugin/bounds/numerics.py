"""Floating point the bounds can trust: one documented tolerance for rounding-level inversions,
and the memory budget of CROWN (TF32 is switched off in :mod:`harp_plugin.bounds.precision`)."""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

from harp_plugin.bounds.errors import BoundError

INVERSION_TOLERANCE = 1e-4
"""Largest lower − upper (relative to 1 + the largest |bound|) treated as rounding: such bounds
are widened to [min, max] (sound); a larger inversion is a BoundError."""

def checked_bounds(lower: Tensor, upper: Tensor, where: str, tolerance: float = INVERSION_TOLERANCE) -> tuple[Tensor, Tensor]:
    """Raise BoundError on NaN, or on bounds inverted beyond rounding at ``where``; return the
    bounds with rounding-level inversions widened to [min, max]."""
    if torch.isnan(lower).any() or torch.isnan(upper).any():
        raise BoundError(f"bounds at '{where}' contain NaN (check the weights and inputs for NaN/inf)")
    if not lower.numel():
        return lower, upper
    gap = (lower - upper).max().item()
    if gap <= 0:
        return lower, upper
    scale = 1.0 + max(lower.abs().max().item(), upper.abs().max().item())
    if gap > tolerance * scale:
        raise BoundError(
            f"bounds at '{where}' are inverted: lower exceeds upper by {gap:.3g}, beyond the rounding "
            f"tolerance {tolerance:g}×{scale:.3g}"
        )
    return torch.minimum(lower, upper), torch.maximum(lower, upper)


def default_memory_budget(device: torch.device) -> int:
    """Bytes CROWN may use for coefficients: half the free memory of a GPU, a quarter of the
    available RAM on CPU (at least 256 MiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(free // 2, 2**28)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 2**32
    return max(available // 4, 2**28)


def resolve_budget(budget: Optional[int], device: torch.device) -> int:
    if budget is None:
        return default_memory_budget(device)
    if budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {budget}")
    return int(budget)
