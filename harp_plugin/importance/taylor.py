"""Adversarial Taylor: Torch-Pruning's Taylor criterion on the adversarial loss's gradients."""
from __future__ import annotations

from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.importance.errors import NotFittedError
from harp_plugin.models.device import model_device
from harp_plugin.models.modes import eval_mode
from harp_plugin.robust.losses import TrainingLoss


class AdversarialTaylorImportance(tp.importance.GroupTaylorImportance):
    """|θ·∂L_adv/∂θ| per channel, with ∂L_adv/∂θ summed over ``batches`` adversarial batches.

    ``fit`` leaves the gradients in ``.grad`` (any caller that accumulates them itself works
    too); pruning must follow before anything else touches them. A layer without a gradient
    is an error rather than a silent zero score.
    """

    def __init__(self, batches: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if batches < 1:
            raise ValueError(f"batches must be >= 1, got {batches}")
        self.batches = batches

    def fit(self, model: nn.Module, train_loader: DataLoader, *, loss: TrainingLoss) -> None:
        """Accumulate the adversarial loss's gradients over the first ``batches`` batches."""
        accumulate_gradients(model, train_loader, loss, self.batches)

    def __call__(self, group: tp.Group, **kwargs: Any) -> torch.Tensor:
        for item in group.items:
            layer = item.dep.target.module
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.weight.grad is None:
                raise NotFittedError(
                    f"layer {item.dep.target.name} has no gradient: call imp.fit(model, train_loader, "
                    "loss=...) on this model before pruner.step() (and do not clear the gradients)"
                )
        return super().__call__(group)


def accumulate_gradients(model: nn.Module, loader: DataLoader, loss: TrainingLoss, batches: int) -> None:
    """Sum ∂loss/∂θ over the first ``batches`` batches into ``.grad`` (for Taylor criteria).

    The model is scored in eval mode, so BN running statistics do not drift.
    """
    model.zero_grad(set_to_none=True)
    device = model_device(model)
    with eval_mode(model):
        for index, (inputs, labels) in enumerate(loader):
            if index == batches:
                break
            loss(model, inputs.to(device), labels.to(device)).backward()


class HessianImportance(tp.importance.GroupHessianImportance):
    """Torch-Pruning's diagonal-Hessian criterion, θ²·mean(g²) over per-sample gradients g.

    Torch-Pruning 1.6.1 checks the parameter's name but stores under the parameter itself,
    so every call restarts the sums and only the last sample counts; this accumulates them.
    """

    def accumulate_grad(self, model: nn.Module) -> None:
        for param in model.parameters():
            if param.grad is None:
                continue
            squared = param.grad.detach().pow(2)
            if param in self._accu_grad:
                self._accu_grad[param] += squared
                self._counter[param] += 1
            else:
                self._accu_grad[param] = squared.clone()
                self._counter[param] = 1


def accumulate_hessian(
    model: nn.Module, loader: DataLoader, loss: TrainingLoss, importance: tp.importance.GroupHessianImportance,
    samples: int,
) -> None:
    """Feed a Hessian criterion the per-sample gradients of the first ``samples`` training
    samples. The ``.grad`` tensors stay allocated: the criterion writes its estimate there."""
    importance.zero_grad()
    device = model_device(model)
    seen = 0
    with eval_mode(model):
        for inputs, labels in loader:
            for x, y in zip(inputs.to(device), labels.to(device)):
                if seen == samples:
                    break
                model.zero_grad(set_to_none=False)
                loss(model, x.unsqueeze(0), y.unsqueeze(0)).backward()
                importance.accumulate_grad(model)
                seen += 1
            if seen == samples:
                break
