"""Adversarial training objectives (methods.md §3) as ``loss(model, x, y) -> Tensor`` objects.

Each loss generates its adversarial examples with the model in eval mode (the attack
wrapper guarantees it and restores the mode) and computes the loss in the model's own
mode, i.e. train mode inside a training loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from harp_plugin.robust.attacks import Attack, pgd, trades_pgd


class TrainingLoss(Protocol):
    """What the training loop calls; certified losses follow the same protocol."""

    name: str

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...


@dataclass
class StandardLoss:
    """Plain cross-entropy: no attack (a non-robust baseline)."""

    name: str = "standard"

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(inputs), labels)


@dataclass
class _AttackedLoss:
    """Shared part of the adversarial losses: ε, the attack's steps and step size."""

    eps: float
    steps: int = 10
    alpha: float | None = None
    attack: Attack = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.attack = pgd(self.eps, steps=self.steps, alpha=self.alpha, random_start=True)


@dataclass
class PGDATLoss(_AttackedLoss):
    """Madry et al.: CE on PGD examples from a uniform random start in the ε-ball."""

    name: str = "pgd-at"

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial = self.attack(model, inputs, labels)
        return F.cross_entropy(model(adversarial), labels)


@dataclass
class TRADESLoss(_AttackedLoss):
    """Zhang et al.: CE(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x_adv)), β = 6."""

    beta: float = 6.0
    name: str = "trades"

    def __post_init__(self) -> None:
        _check_beta(self.beta)
        self.attack = trades_pgd(self.eps, steps=self.steps, alpha=self.alpha)

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial = self.attack(model, inputs, labels)
        natural_logits = model(inputs)
        adversarial_logits = model(adversarial)
        kl = F.kl_div(
            F.log_softmax(adversarial_logits, dim=1),
            F.softmax(natural_logits, dim=1),
            reduction="batchmean",
        )
        return F.cross_entropy(natural_logits, labels) + self.beta * kl


@dataclass
class MARTLoss(_AttackedLoss):
    """Wang et al.: boosted CE on x_adv + β·mean[KL(p_nat ‖ p_adv)·(1 − p_nat,y)], β = 5."""

    beta: float = 5.0
    name: str = "mart"

    def __post_init__(self) -> None:
        _check_beta(self.beta)
        super().__post_init__()

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial = self.attack(model, inputs, labels)
        natural_probs = F.softmax(model(inputs), dim=1)
        adversarial_logits = model(adversarial)
        adversarial_probs = F.softmax(adversarial_logits, dim=1)
        runner_up = _most_likely_wrong_class(adversarial_probs, labels)
        boosted_ce = F.cross_entropy(adversarial_logits, labels) + F.nll_loss(
            torch.log(1.0001 - adversarial_probs + 1e-12), runner_up
        )
        kl_per_sample = (
            natural_probs * (torch.log(natural_probs + 1e-12) - torch.log(adversarial_probs + 1e-12))
        ).sum(dim=1)
        true_prob = natural_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        return boosted_ce + self.beta * (kl_per_sample * (1.0 - true_prob)).mean()


def _most_likely_wrong_class(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    masked = probs.detach().clone()
    masked.scatter_(1, labels.unsqueeze(1), float("-inf"))
    return masked.argmax(dim=1)


def _check_beta(beta: float) -> None:
    if beta < 0:
        raise ValueError(f"beta (robust-loss weight) must be >= 0, got {beta}")


LOSS_FACTORIES: dict[str, Callable[..., Any]] = {
    "standard": StandardLoss,
    "pgd-at": PGDATLoss,
    "trades": TRADESLoss,
    "mart": MARTLoss,
}


@runtime_checkable
class ProgressAwareLoss(Protocol):
    """A loss whose strength follows training progress (e.g. certified training's ε ramp)."""

    def set_progress(self, epoch: int, batch: int, batches_per_epoch: int) -> None: ...
