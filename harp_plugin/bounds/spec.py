"""Input boxes and output specifications, validated so bad arguments fail loudly."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from harp_plugin.bounds.operators import Interval

PIXEL_RANGE = (0.0, 1.0)


def input_box(x: Tensor, eps: float, lower: float = PIXEL_RANGE[0], upper: float = PIXEL_RANGE[1]) -> Interval:
    """The L∞ ball of radius ``eps`` around ``x``, clipped to the valid range [lower, upper]."""
    eps = check_eps(eps)
    if x.dim() < 2:
        raise ValueError(f"input x must be a batch of shape (B, ...), got shape {tuple(x.shape)}")
    if not lower < upper:
        raise ValueError(f"valid input range needs lower < upper, got [{lower}, {upper}]")
    if not torch.isfinite(x).all():
        raise ValueError("input x contains NaN or infinite values")
    low_x, high_x = x.min().item(), x.max().item()
    if low_x < lower or high_x > upper:
        raise ValueError(
            f"input x spans [{low_x:.4g}, {high_x:.4g}], outside the valid range [{lower}, {upper}]; "
            "pass un-normalised pixels (normalise inside the model) or set lower/upper"
        )
    return (x - eps).clamp(min=lower), (x + eps).clamp(max=upper)


def check_eps(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    return eps


def margin_matrix(y: Tensor, num_classes: int) -> Tensor:
    """C with rows e_y − e_j for every j ≠ y: shape (B, num_classes − 1, num_classes).

    The sample is certified iff every lower bound of C·f is > 0 (a joint bound, tighter than
    comparing separately bounded logits).
    """
    y = check_labels(y, num_classes)
    eye = torch.eye(num_classes, device=y.device)
    C = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # (B, n, n): row j is e_y - e_j
    keep = torch.ones_like(C[..., 0], dtype=torch.bool).scatter_(1, y.unsqueeze(1), False)
    return C[keep].view(y.numel(), num_classes - 1, num_classes)


def check_labels(y: Tensor, num_classes: int) -> Tensor:
    if num_classes < 2:
        raise ValueError(f"a margin specification needs at least 2 classes, the model has {num_classes}")
    y = torch.as_tensor(y).long().flatten()
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0].item()
        raise ValueError(f"class index {bad} is out of range for a model with {num_classes} outputs")
    return y
