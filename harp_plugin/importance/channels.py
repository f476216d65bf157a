"""Channel pruning end to end: (pre-train) → score channels → remove them → fine-tune."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.taylor import AdversarialTaylorImportance
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult, fit

LEARNED = ("harp", "hydra", "lwm")


@dataclass
class ChannelResult:
    """Training histories and the model size before and after channel removal."""

    prune: TrainResult | None
    finetune: TrainResult
    parameters_before: int
    parameters_after: int


def prune_channels(
    model: nn.Module,
    importance: tp.importance.Importance,
    loss: TrainingLoss,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    target_kept: float,
    example_inputs: torch.Tensor,
    finetune: TrainConfig,
    prune: TrainConfig | None = None,
    classifier: nn.Module,
    val_attack: Attack | None = None,
    progress: bool = False,
    strict: bool = True,
) -> ChannelResult:
    """Prune ``model`` to ``target_kept`` of its channels in place, then fine-tune it.

    A :class:`HarpImportance` is fitted first (``prune`` config) and brings its learned
    per-layer ratios; an :class:`AdversarialTaylorImportance` collects its gradients;
    any other Torch-Pruning importance prunes uniformly as is.
    """
    before = sum(p.numel() for p in model.parameters())
    trained = None
    ratios = None
    if isinstance(importance, HarpImportance):
        trained = importance.fit(model, train_loader, loss=loss, val_loader=val_loader, config=prune,
                                 example_inputs=example_inputs, ignored_layers=[classifier],
                                 val_attack=val_attack, progress=progress, strict=strict)
        ratios = importance.pruning_ratio_dict(model, example_inputs)
    elif isinstance(importance, AdversarialTaylorImportance):
        importance.fit(model, train_loader, loss=loss)
    pruner = tp.MetaPruner(model, example_inputs, importance=importance, pruning_ratio=1.0 - target_kept,
                           pruning_ratio_dict=ratios, ignored_layers=[classifier])
    pruner.step()
    model.zero_grad(set_to_none=True)
    tuned = fit(model, loss, train_loader, val_loader, finetune, val_attack=val_attack, progress=progress,
                description="channel fine-tune")
    return ChannelResult(trained, tuned, before, sum(p.numel() for p in model.parameters()))
