"""One structured-pruning step through Torch-Pruning, with the traps of methods.md §7 handled."""
from __future__ import annotations

from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.models.validation import final_classifier
from harp_plugin.robust.losses import TrainingLoss

GRADIENT_IMPORTANCES = (tp.importance.GroupTaylorImportance, tp.importance.TaylorImportance)


def prune_channels(
    model: nn.Module,
    example_inputs: torch.Tensor,
    importance: tp.importance.Importance,
    pruning_ratio: float,
    *,
    loss: TrainingLoss | None = None,
    loader: DataLoader | None = None,
    gradient_batches: int = 4,
    ignored_layers: list[nn.Module] | None = None,
    **pruner_options: Any,
) -> tp.pruner.MetaPruner:
    """Remove ``pruning_ratio`` of the channels of every prunable layer, in place.

    The final classifier is always ignored (it would lose classes). Gradient-based
    importances (Taylor) get gradients of ``loss`` — the adversarial loss for a robust
    criterion — accumulated over ``gradient_batches`` of ``loader`` first. Parameters are
    replaced by the step: rebuild any optimiser afterwards.
    """
    if not 0.0 <= pruning_ratio < 1.0:
        raise ValueError(f"pruning_ratio must be in [0, 1), got {pruning_ratio}")
    ignored = list(ignored_layers or []) + [final_classifier(model)]
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs,
        importance=importance,
        pruning_ratio=pruning_ratio,
        ignored_layers=ignored,
        **pruner_options,
    )
    if isinstance(importance, GRADIENT_IMPORTANCES):
        _accumulate_gradients(model, loss, loader, gradient_batches, example_inputs.device)
    pruner.step()
    model.zero_grad(set_to_none=True)
    return pruner


def _accumulate_gradients(
    model: nn.Module,
    loss: TrainingLoss | None,
    loader: DataLoader | None,
    batches: int,
    device: torch.device,
) -> None:
    if loss is None or loader is None:
        raise ValueError("a gradient-based importance (Taylor) needs both `loss` and `loader`")
    model.zero_grad(set_to_none=True)
    model.eval()  # BN statistics must not drift while scoring
    for index, (inputs, labels) in enumerate(loader):
        if index >= batches:
            break
        loss(model, inputs.to(device), labels.to(device)).backward()

