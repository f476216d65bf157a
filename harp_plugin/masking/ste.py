"""The straight-through estimator of HARP/HYDRA (methods.md §1).

The top-k mask is piecewise constant in the scores s and the kept fraction a, so its true
gradient is zero almost everywhere. The estimator passes the gradient reaching the mask
straight through: ∂L/∂s = ∂L/∂M ⊙ sign(s) (the mask ranks |s|) and ∂L/∂a = Σ ∂L/∂M over
kept *and* pruned entries. The mask itself is an input (computed once per optimiser step),
so the many forward passes of an attack never re-sort the scores.

Fine-grained mode multiplies the weight in one function (:class:`MaskedWeight`); channel
mode takes the mask itself out of :class:`MaskSTE` and multiplies it into every parameter of
a Torch-Pruning group (``masking.gates``), so autograd sums ∂L/∂M over the group's members.
"""
from __future__ import annotations

import torch


def expand_mask(mask: torch.Tensor, target: torch.Tensor, channel_dim: int = 0) -> torch.Tensor:
    """A per-entry mask as is; a per-channel mask shaped to broadcast along ``channel_dim``."""
    if mask.shape == target.shape:
        return mask
    shape = [1] * target.dim()
    shape[channel_dim] = -1
    return mask.reshape(shape)


class MaskedWeight(torch.autograd.Function):
    """x ⊙ M in the forward pass; straight-through gradients for s and a in the backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        target: torch.Tensor,
        scores: torch.Tensor,
        kept_fraction: torch.Tensor,
        mask: torch.Tensor,
        channel_dim: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(target, scores, mask)
        ctx.channel_dim = channel_dim
        return target * expand_mask(mask, target, channel_dim)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        target, scores, mask = ctx.saved_tensors
        dim = ctx.channel_dim
        need_target, need_scores, need_kept, _, _ = ctx.needs_input_grad
        grad_target = grad_output * expand_mask(mask, target, dim) if need_target else None
        grad_scores = grad_kept = None
        if need_scores or need_kept:
            grad_mask = grad_output * target
            if mask.shape != target.shape:
                grad_mask = grad_mask.sum(dim=[d for d in range(target.dim()) if d != dim])
            if need_scores:
                grad_scores = grad_mask * torch.sign(scores)
            if need_kept:
                grad_kept = grad_mask.sum().reshape(())
        return grad_target, grad_scores, grad_kept, None, None


class MaskSTE(torch.autograd.Function):
    """The mask M itself, with ∂L/∂s = ∂L/∂M ⊙ sign(s) and ∂L/∂a = Σ ∂L/∂M."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, scores: torch.Tensor, kept_fraction: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(scores)
        return mask.clone()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_mask: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        (scores,) = ctx.saved_tensors
        need_scores, need_kept, _ = ctx.needs_input_grad
        grad_scores = grad_mask * torch.sign(scores) if need_scores else None
        grad_kept = grad_mask.sum().reshape(()) if need_kept else None
        return grad_scores, grad_kept, None
