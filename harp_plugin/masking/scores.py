"""Initial scores and rate logits (methods.md §1 "scaled score init" and "init of r")."""
from __future__ import annotations

import math

import torch

_LOGIT_CLIP = 1e-4  # keeps logit finite when a_init sits on a_min or on 1


def scaled_scores(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Scores that rank like |θ| at a learning-rate-friendly scale.

    Per weight: sqrt(6 / fan_in)·θ / max|θ|. Per output channel: the channel's L1 norm
    divided by the largest one (the intended per-channel L1; the released code's reshape
    groups output filters differently).
    """
    weight = weight.detach()
    if per_channel:
        norms = weight.abs().flatten(1).sum(dim=1)
        return norms / norms.max().clamp_min(torch.finfo(norms.dtype).tiny)
    fan_in = weight[0].numel()
    peak = weight.abs().max().clamp_min(torch.finfo(weight.dtype).tiny)
    return math.sqrt(6.0 / fan_in) * weight / peak


def rate_logit(kept_init: float, min_kept: float) -> float:
    """r with a_min + (1 − a_min)·σ(r) = a_init, clipped so the logit stays finite."""
    share = (kept_init - min_kept) / (1.0 - min_kept)
    share = min(max(share, _LOGIT_CLIP), 1.0 - _LOGIT_CLIP)
    return math.log(share / (1.0 - share))
