"""The straight-through estimator of HARP/HYDRA (methods.md §1).

The top-k mask is piecewise constant in the scores s and the kept fraction a, so its true
gradient is zero almost everywhere. The estimator passes the gradient reaching the mask
straight through: ∂L/∂s = ∂L/∂M ⊙ sign(s) (the mask ranks |s|) and ∂L/∂a = Σ ∂L/∂M over
kept *and* pruned entries. The mask itself is an input (computed once per optimiser step),
so the many forward passes of an attack never re-sort the scores.
"""
from __future__ import annotations

import torch


def expand_mask(mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A per-weight mask as is; a per-output-channel mask broadcast over the weight."""
    if mask.shape == weight.shape:
        return mask
    return mask.reshape(-1, *([1] * (weight.dim() - 1)))


class MaskedWeight(torch.autograd.Function):
    """θ ⊙ M in the forward pass; straight-through gradients for s and a in the backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        weight: torch.Tensor,
        scores: torch.Tensor,
        kept_fraction: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(weight, scores, mask)
        return weight * expand_mask(mask, weight)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        weight, scores, mask = ctx.saved_tensors
        need_weight, need_scores, need_kept, _ = ctx.needs_input_grad
        grad_weight = grad_output * expand_mask(mask, weight) if need_weight else None
        grad_scores = grad_kept = None
        if need_scores or need_kept:
            grad_mask = grad_output * weight
            if mask.shape != weight.shape:
                grad_mask = grad_mask.flatten(1).sum(dim=1)
            if need_scores:
                grad_scores = grad_mask * torch.sign(scores)
            if need_kept:
                grad_kept = grad_mask.sum().reshape(())
        return grad_weight, grad_scores, grad_kept, None
