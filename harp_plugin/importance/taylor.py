"""Adversarial Taylor: Torch-Pruning's Taylor criterion on the adversarial loss's gradients."""
from __future__ import annotations

import weakref
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.importance.errors import NotFittedError
from harp_plugin.robust.losses import TrainingLoss


class AdversarialTaylorImportance(tp.importance.GroupTaylorImportance):
    """|θ·∂L_adv/∂θ| per channel, with ∂L_adv/∂θ summed over ``batches`` adversarial batches.

    ``fit`` leaves the gradients in ``.grad``; pruning must follow before anything else
    touches them. Used without ``fit`` it refuses, rather than reading stale or no gradients.
    """

    def __init__(self, batches: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if batches < 1:
            raise ValueError(f"batches must be >= 1, got {batches}")
        self.batches = batches
        self._model: weakref.ref[nn.Module] | None = None

    def fit(self, model: nn.Module, train_loader: DataLoader, *, loss: TrainingLoss) -> None:
        """Accumulate the adversarial loss's gradients over the first ``batches`` batches."""
        was_training = model.training
        model.train()
        model.zero_grad(set_to_none=True)
        try:
            for index, (inputs, labels) in enumerate(train_loader):
                if index == self.batches:
                    break
                loss(model, inputs, labels).backward()
        finally:
            model.train(was_training)
        self._model = weakref.ref(model)

    def __call__(self, group: tp.Group, **kwargs: Any) -> torch.Tensor:
        if self._model is None:
            raise NotFittedError(
                "AdversarialTaylorImportance needs the adversarial loss's gradients: call "
                "imp.fit(model, train_loader, loss=...) before pruner.step()"
            )
        for item in group.items:
            layer = item.dep.target.module
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.weight.grad is None:
                raise NotFittedError(
                    f"layer {item.dep.target.name} has no gradient: AdversarialTaylorImportance was "
                    "fitted to another model, or the gradients were cleared before pruning"
                )
        return super().__call__(group)
