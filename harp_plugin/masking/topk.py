"""The top-k mask of HARP/HYDRA: keep the k entries of largest |s| within one layer."""
from __future__ import annotations

import torch

_FLOAT_SLACK = 1e-9  # so that e.g. a = 0.01 of 1000 entries keeps exactly 10, not 11


def kept_count(total: int, kept_fraction: float) -> int:
    """k = n − int((1 − a)·n), as in methods.md §1; at least one entry for any a > 0."""
    return total - int((1.0 - kept_fraction) * total + _FLOAT_SLACK)


def topk_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """A 0/1 mask shaped like ``scores`` keeping the ``keep`` largest |scores|.

    ``torch.topk`` selects them without sorting the whole layer.
    """
    flat = scores.detach().abs().flatten()
    mask = torch.zeros_like(flat)
    mask[torch.topk(flat, keep, sorted=False).indices] = 1.0
    return mask.view_as(scores)
