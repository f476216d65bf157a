"""The reductions that keep every rank's model and decisions identical.

Gradients are averaged (the arithmetic of DDP's reducer), BN statistics averaged, the
starting state broadcast from rank 0, evaluation counts gathered. Each is a no-op in a single
process.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn

from harp_plugin.distributed.context import active, world_size


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace every ``.grad`` by its mean over ranks, in one flat all-reduce.

    A parameter without a gradient on this rank contributes zeros (the collective has the same
    shape on every rank); one without a gradient on every rank keeps ``None``, so the optimiser
    skips it exactly as in a single process.
    """
    if not active():
        return
    parameters = [p for p in parameters if p.requires_grad]
    if not parameters:
        return
    like = parameters[0]
    present = torch.tensor([p.grad is not None for p in parameters], dtype=like.dtype, device=like.device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])
    flat = torch.cat([flat, present])
    dist.all_reduce(flat)
    flat[: -len(parameters)] /= world_size()
    offset = 0
    for p, anywhere in zip(parameters, flat[-len(parameters):].tolist()):
        size = p.numel()
        if anywhere:
            p.grad = flat[offset : offset + size].view_as(p).clone()
        offset += size


def average_buffers(model: nn.Module) -> None:
    """Floating-point buffers (BN running mean/var) become their mean over ranks."""
    if not active():
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world_size()


def broadcast_state(model: nn.Module) -> None:
    """Every rank starts from rank 0's parameters and buffers."""
    if not active():
        return
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor, src=0)


def average_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor of the same shape on every rank (a new tensor)."""
    if not active():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not active():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
