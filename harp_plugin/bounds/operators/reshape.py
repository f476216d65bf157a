"""Rearrangements (flatten, view, reshape, permute, transpose, squeeze, …) and ``cat``.

A rearrangement moves elements without changing them, so IBP applies it to both ends and
CROWN applies its inverse permutation to the coefficients. The permutation is read off the
call itself, applied to the element indices, so every variant of every such call is bounded
by one rule; one that mixes samples of the batch is refused.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from harp_plugin.bounds.errors import NoBoundRule
from harp_plugin.bounds.operators.base import Backward, Bound, BoundOp, Interval


class RearrangeOp(BoundOp):
    """``apply`` permutes the elements of each sample (checked when built)."""

    elementwise = True

    def __init__(self, apply: Callable[[Tensor], Tensor], in_shape: torch.Size) -> None:
        self.apply = apply
        indices = apply(torch.arange(in_shape.numel()).view(in_shape))
        per_sample = in_shape[1:].numel()
        if indices.dim() == 0 or indices.shape[0] != in_shape[0] or indices.numel() != in_shape.numel():
            raise NoBoundRule(f"it turns shape {tuple(in_shape)} into {tuple(indices.shape)}, not a per-sample rearrangement")
        order = indices.reshape(in_shape[0], -1)
        offsets = torch.arange(in_shape[0]).unsqueeze(1) * per_sample
        if not torch.equal(order - offsets, order[:1].expand_as(order)):
            raise NoBoundRule("it mixes elements of different samples of the batch")
        self.out_shape = indices.shape[1:]
        self.order = order[0]
        self.plain = torch.equal(self.order, torch.arange(per_sample))

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        lower, upper = bounds[0]
        return self.apply(lower), self.apply(upper)

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        in_shape = in_bounds[0][0].shape[1:]
        flat = A.flatten(2)
        if not self.plain:
            flat = torch.empty_like(flat).index_copy_(2, self.order.to(A.device), flat)
        return [flat.reshape(*A.shape[:2], *in_shape)], None


def rearrange_method(name: str):
    """The rule of ``x.<name>(*args)`` for a rearranging tensor method."""

    def rule(args: tuple, kwargs: dict):
        x, rest = args[0], args[1:]
        return RearrangeOp(lambda t: getattr(t, name)(*rest, **kwargs), x.shape), [x]

    return rule


def rearrange_function(function: Callable):
    """The rule of ``function(x, *args)`` for a rearranging function (torch.flatten, …)."""

    def rule(args: tuple, kwargs: dict):
        x, rest = args[0], args[1:]
        return RearrangeOp(lambda t: function(t, *rest, **kwargs), x.shape), [x]

    return rule


class CatOp(BoundOp):
    """``torch.cat`` of bounded tensors along a non-batch dimension."""

    elementwise = True

    def __init__(self, dim: int, sizes: list[int]) -> None:
        self.dim, self.sizes = dim, sizes

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        return torch.cat([b[0] for b in bounds], self.dim), torch.cat([b[1] for b in bounds], self.dim)

    def backward(self, A: Tensor, in_bounds: Sequence[Interval]) -> Backward:
        return list(A.split(self.sizes, dim=self.dim + 1)), None


def cat_rule(args: tuple, kwargs: dict):
    tensors = args[0] if args else kwargs["tensors"]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not all(isinstance(t, Bound) for t in tensors):
        raise NoBoundRule("cat of bounded tensors with constants is not supported")
    rank = len(tensors[0].shape)
    dim = dim % rank
    if dim == 0:
        raise NoBoundRule("cat along the batch dimension")
    return CatOp(dim, [t.shape[dim] for t in tensors]), list(tensors)
