"""Where a model runs: every path of the plugin runs on the device of the model's tensors.

Nothing here moves a model. Moving it is the caller's decision (``model.to(device)``), made
once; a function that silently moved it (or defaulted to the CPU) would leave the rest of a
pipeline — optimisers, masks, a pruner's dependency graph — pointing at the old tensors.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn


class DeviceError(ValueError):
    """A model split across devices, or a requested device the model is not on."""


def model_device(model: nn.Module, requested: str | torch.device | None = None) -> torch.device:
    """The one device holding ``model``'s parameters and buffers.

    ``requested`` (``None`` = wherever the model is) must name that device; ``"cuda"`` means
    the current CUDA device. A model without tensors runs on ``requested`` or on torch's
    default device.
    """
    wanted = None if requested is None else parse_device(requested)
    devices = {tensor.device for tensor in itertools.chain(model.parameters(), model.buffers())}
    if len(devices) > 1:
        holders = _first_holders(model)
        raise DeviceError(
            f"{type(model).__name__} is split across devices ({holders}); move all of it to one device "
            "with model.to(device) first"
        )
    if not devices:
        return wanted if wanted is not None else torch.empty(0).device
    (device,) = devices
    if wanted is not None and not same_device(wanted, device):
        raise DeviceError(
            f"device {str(requested)!r} was requested but {type(model).__name__}'s parameters are on "
            f"{device}; move the model with model.to({str(requested)!r}) first, or leave device unset to "
            "run where the model is"
        )
    return device


def parse_device(requested: str | torch.device) -> torch.device:
    """``torch.device(requested)``, with a malformed name as a ``DeviceError``."""
    try:
        return torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(f"{requested!r} is not a device name (e.g. 'cpu', 'cuda', 'cuda:1'): {error}") from error


def same_device(wanted: torch.device, actual: torch.device) -> bool:
    """Whether ``actual`` is ``wanted``; an index-less ``wanted`` means the current one."""
    if wanted.type != actual.type:
        return False
    if wanted.index is not None:
        return wanted.index == actual.index
    if wanted.type == "cuda":
        return actual.index == torch.cuda.current_device()
    return True


def _first_holders(model: nn.Module) -> str:
    """One tensor name per device, e.g. ``cpu: 0.weight, cuda:0: 1.weight``."""
    first: dict[torch.device, str] = {}
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        first.setdefault(tensor.device, name)
    return ", ".join(f"{device}: {name}" for device, name in first.items())
