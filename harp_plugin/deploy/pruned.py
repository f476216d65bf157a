"""Save any pruned model and load it back into its dense architecture.

The file holds the weights, the structure record (:mod:`harp_plugin.deploy.structure`),
the masks (as ``torch.nn.utils.prune`` buffers), HARP's learned per-layer kept fractions and
free-form metadata; it is written atomically and loads with ``weights_only=True``::

    save_pruned(model, "pruned.pt", learned_ratios=imp.learned_kept_fractions())
    model = load_pruned(lambda: torchvision.models.resnet18(num_classes=10), "pruned.pt")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from harp_plugin.deploy.masks import masked_copy
from harp_plugin.deploy.structure import (
    Record, apply_structure, capture_structure, check_architecture, refresh_masked, state_keys,
)
from harp_plugin.masking import MaskSet
from harp_plugin.robust.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

FORMAT = "harp-plugin/pruned-model"
VERSION = 1


@dataclass
class PrunedRecord:
    """What a pruned-model file holds, read and checked but not yet applied to a model."""

    structure: Record
    state: dict[str, torch.Tensor]
    learned_ratios: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def masks(self) -> dict[str, torch.Tensor]:
        """Each masked tensor's 0/1 mask, by ``"layer.tensor"`` name."""
        return {key.removesuffix("_mask"): value for key, value in self.state.items()
                if key.endswith("_mask") and key.removesuffix("_mask") + "_orig" in self.state}


def save_pruned(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    masks: MaskSet | None = None,
    learned_ratios: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (channels removed, prune masks, or a live ``masks`` set) to ``path``.

    ``masks``: the model's attached HARP/HYDRA/LWM masks; they are saved as masks (the model
    itself is not changed) with their learned kept fractions. ``metadata`` must hold only
    plain values (numbers, strings, lists, dicts).
    """
    ratios = dict(learned_ratios or {})
    if masks is not None:
        if masks.model is not model:
            raise ValueError("masks belong to another model: pass the MaskSet attached to this model")
        ratios = {name: float(a) for name, a in masks.kept_fractions().items()} | ratios
        model = masked_copy(masks)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "structure": capture_structure(model),
        "state": model.state_dict(),
        "learned_ratios": {str(k): float(v) for k, v in ratios.items()},
        "metadata": dict(metadata or {}),
    }
    return save_checkpoint(payload, path)


def read_pruned(path: str | os.PathLike[str], map_location: str | torch.device) -> PrunedRecord:
    """Read and check a file written by :func:`save_pruned`; anything else is a clear error.

    ``map_location``: where the tensors go (``load_pruned`` passes the model's device).
    """
    payload = load_checkpoint(path, map_location=map_location)
    source = f"checkpoint {str(path)!r}"
    if payload.get("format") != FORMAT or "structure" not in payload:
        hint = " (a plain state dict: it loads only into the same, unpruned architecture)" if "model" in payload else ""
        raise CheckpointError(
            f"{source} has no structure record: it was not written by save_pruned{hint}; "
            f"it holds keys {sorted(map(str, payload))[:6]}"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{source} is pruned-model format version {payload.get('version')}, this code reads {VERSION}")
    structure, state = payload["structure"], payload["state"]
    missing = sorted(state_keys(structure) - set(state))
    if missing:
        raise CheckpointError(f"{source} is damaged: its weights lack {missing[:5]} that its structure record lists")
    return PrunedRecord(structure, state, payload.get("learned_ratios", {}), payload.get("metadata", {}))


def load_pruned(
    model_or_factory: nn.Module | Callable[[], nn.Module],
    path: str | os.PathLike[str],
    *,
    fold_masks: bool = False,
) -> nn.Module:
    """The pruned model of ``path``, rebuilt from its dense architecture.

    ``model_or_factory``: the dense model (changed in place) or a callable that builds it.
    Nothing is changed when the file does not fit: the error names the first layer that
    differs. ``fold_masks``: make masked weights plain tensors θ ⊙ M (for deployment).
    """
    model = model_or_factory if isinstance(model_or_factory, nn.Module) else model_or_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"the factory returned {type(model).__name__}, not an nn.Module")
    device = _device_of(model)
    record = read_pruned(path, map_location=device)
    source = f"checkpoint {str(path)!r}"
    check_architecture(model, record.structure, source)
    apply_structure(model, record.structure, device)
    try:
        model.load_state_dict(record.state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{source} does not fit its own structure record: {error}") from error
    refresh_masked(model)
    if fold_masks:
        fold_pruning_masks(model)
    return model


def fold_pruning_masks(model: nn.Module) -> None:
    """Replace every ``torch.nn.utils.prune`` mask by the plain masked weight θ ⊙ M."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
