"""Checkpoints that are never half-written and load with ``weights_only=True``.

A pruned model's layers are smaller than the architecture that builds it, so loading
reshapes Conv/Linear/BatchNorm layers to the saved shapes first (``match_saved_shapes``);
every other shape mismatch is an error naming the tensor.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from harp_plugin.distributed.context import is_main


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, truncated, or does not fit the model."""


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over ``path``.

    Under torch.distributed only rank 0 writes (every rank holds the same state).
    """
    target = Path(path)
    if not is_main():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(dict(payload), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device) -> dict[str, Any]:
    """Load with ``weights_only=True``; a missing or damaged file gets one clear error.

    ``map_location`` is where the tensors go, normally the model's device: it is required
    because a checkpoint saved on a GPU must load on a machine without one, and vice versa.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {str(source)!r} does not exist")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"checkpoint {str(source)!r} is corrupt or truncated and cannot be loaded: {error}"
        ) from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {str(source)!r} holds {type(payload).__name__}, not a dict")
    return payload


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model``, first shrinking layers a pruning removed channels from."""
    match_saved_shapes(model, state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.load_state_dict(dict(state))


def match_saved_shapes(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Resize Conv/Linear/BatchNorm layers whose saved tensors are smaller (a pruned model)."""
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        saved_weight = state.get(f"{prefix}weight")
        if saved_weight is None or not isinstance(module, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            continue
        if tuple(saved_weight.shape) == tuple(module.weight.shape):
            continue
        _resize_layer(module, module_name, saved_weight.shape)


def _resize_layer(module: nn.Module, name: str, shape: torch.Size) -> None:
    if isinstance(module, nn.Conv2d):
        if tuple(shape[2:]) != tuple(module.weight.shape[2:]):
            raise CheckpointError(f"layer {name!r}: saved kernel {tuple(shape)} vs {tuple(module.weight.shape)}")
        module.out_channels, module.in_channels = int(shape[0]), int(shape[1]) * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = int(shape[0]), int(shape[1])
    else:
        module.num_features = int(shape[0])
    for tensor_name, tensor in list(module.named_parameters(recurse=False)) + list(
        module.named_buffers(recurse=False)
    ):
        if tensor.dim() == 0:
            continue
        new_shape = shape if tensor_name == "weight" else (int(shape[0]),)
        replacement = torch.empty(new_shape, dtype=tensor.dtype, device=tensor.device)
        if isinstance(tensor, nn.Parameter):
            setattr(module, tensor_name, nn.Parameter(replacement, requires_grad=tensor.requires_grad))
        else:
            module.register_buffer(tensor_name, replacement)
