"""Extension points of the training loop, so pruning methods need no loop of their own."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class EpochRecord:
    """What one epoch produced; validation figures come from the validation split only."""

    epoch: int
    train_loss: float
    val_clean_accuracy: float
    val_robust_accuracy: float | None
    lr: float
    selectable: bool = True
    extras: dict[str, float] = field(default_factory=dict)


class TrainingHooks:
    """No-op base class; a method overrides only what it needs.

    The loop calls, per optimiser step: ``on_batch_start`` (before the attack is generated,
    so a mask computed there is shared by every attack step), then adds ``regulariser`` to
    the adversarial loss. Per epoch: ``on_epoch_end``; the best checkpoint is chosen only
    among epochs for which ``selectable()`` was true.
    """

    def on_batch_start(self, model: nn.Module, batch_index: int, batches_per_epoch: int) -> None:
        """Called once per optimiser step, before anything else touches the batch."""

    def regulariser(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the training loss (e.g. γ·L_c), or None."""
        return None

    def on_epoch_end(self, model: nn.Module, record: EpochRecord) -> None:
        """Called after validation; may write into ``record.extras``."""

    def selectable(self) -> bool:
        """Whether the current state may be chosen as the best checkpoint."""
        return True


class HookChain(TrainingHooks):
    """Several hooks as one, called in order: regularisers add up, and an epoch is selectable
    only when every hook allows it (e.g. mask training's target gate and the ε ramp's)."""

    def __init__(self, *hooks: TrainingHooks) -> None:
        self.hooks = hooks

    def on_batch_start(self, model: nn.Module, batch_index: int, batches_per_epoch: int) -> None:
        for hook in self.hooks:
            hook.on_batch_start(model, batch_index, batches_per_epoch)

    def regulariser(self, model: nn.Module) -> torch.Tensor | None:
        terms = [term for term in (hook.regulariser(model) for hook in self.hooks) if term is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def on_epoch_end(self, model: nn.Module, record: EpochRecord) -> None:
        for hook in self.hooks:
            hook.on_epoch_end(model, record)

    def selectable(self) -> bool:
        return all(hook.selectable() for hook in self.hooks)
