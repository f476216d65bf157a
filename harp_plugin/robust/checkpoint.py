"""Checkpoints that are never half-written and load with ``weights_only=True``.

A pruned model saved for later use goes through ``harp_plugin.deploy.save_pruned``, whose
structure record rebuilds any pruned architecture; these are the plain building blocks.
"""
from __future__ import annotations

import os
import re
import tempfile
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

    Anything ``torch.load`` raises on a damaged file (a zip error, an unpickling error, or a
    bare ``KeyError`` of a byte value for a file that is not a torch archive at all) becomes
    :class:`CheckpointError` naming the path.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {str(source)!r} does not exist")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(error).split())).split(". ")[0][:160]
        raise CheckpointError(
            f"checkpoint {str(source)!r} is corrupt or not a harp-prune checkpoint "
            f"({type(error).__name__}: {reason})"
        ) from error
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {str(source)!r} is corrupt or not a harp-prune checkpoint "
            f"(it holds a {type(payload).__name__}, not a dict)"
        )
    return payload


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` of the same structure; a mismatch names the tensors."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} is corrupt or not a harp-prune checkpoint (no model state in it)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as error:
        raise CheckpointError(f"{source} does not fit the model: {error}") from error
