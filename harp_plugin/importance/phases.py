"""The phases of methods.md §1–§2: pre-train → prune (train masks) → fine-tune, as one call.

Selection happens on the validation split only, and during mask training only among
epochs whose masks meet the target; a target that is never met is reported clearly.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.importance.errors import TargetNotReachedError
from harp_plugin.masking import LayerSparsity, MaskSet, attach_masks, sparsity_report
from harp_plugin.masking.hooks import MaskTrainingHooks
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult, fit
from harp_plugin.schedulers.gamma import IncrementalGamma


def batchnorm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """BN affine parameters: trained with the scores while θ stays frozen."""
    return [
        p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters(recurse=False)
    ]


@contextlib.contextmanager
def only_trainable(model: nn.Module, trainable: Iterable[nn.Parameter]) -> Iterator[None]:
    """Switch off gradients of every other parameter (θ, biases) for the duration."""
    keep = {id(p) for p in trainable}
    switched = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
    for p in switched:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in switched:
            p.requires_grad_(True)


def train_masks(
    model: nn.Module,
    masks: MaskSet,
    loss: TrainingLoss | None,
    train_loader: DataLoader | None,
    val_loader: DataLoader | None,
    config: TrainConfig | None,
    *,
    gamma: IncrementalGamma | None = None,
    val_attack: Attack | None = None,
    progress: bool = False,
    strict: bool = True,
) -> TrainResult:
    """The prune phase: scores (+ HARP rates) and BN trained, θ frozen; masks frozen after.

    LWM trains nothing. HARP defaults to γ₀ = 0.01 stepped per epoch. With ``strict`` a
    target never reached raises :class:`TargetNotReachedError`, otherwise it warns.
    """
    if masks.method == "lwm":
        masks.freeze()
        return TrainResult()
    missing = [n for n, v in (("loss", loss), ("train_loader", train_loader), ("val_loader", val_loader),
                              ("config", config)) if v is None]
    if missing:
        raise ValueError(f"training {masks.method} masks needs {', '.join(missing)}")
    if masks.method == "harp" and gamma is None:
        gamma = IncrementalGamma()
    trainable = masks.score_parameters() + batchnorm_parameters(model)
    hooks = MaskTrainingHooks(masks, gamma if masks.method == "harp" else None)
    with only_trainable(model, trainable):
        result = fit(model, loss, train_loader, val_loader, config, val_attack=val_attack,
                     parameters=trainable, hooks=hooks, progress=progress, description=f"{masks.method} prune")
    if not result.selected:
        _report_unreached(masks, config, strict)
    masks.freeze()
    return result


def _report_unreached(masks: MaskSet, config: TrainConfig, strict: bool) -> None:
    with torch.no_grad():
        overshoot = float(masks.compression_loss())
    message = (
        f"{masks.method} never reached the target kept fraction {masks.target_kept} in {config.epochs} "
        f"epochs: L_c = {overshoot:.4f}, the masks keep {masks.kept_cost_fraction():.4f} of the dense "
        f"{masks.costs.unit}; train longer, raise gamma0 or step gamma more often (period < 1)"
    )
    if strict:
        raise TargetNotReachedError(message)
    warnings.warn(message, stacklevel=3)


@dataclass
class PhaseResult:
    """What each phase produced; ``masks`` stay attached (frozen) in fine-grained mode."""

    masks: MaskSet | None
    report: list[LayerSparsity]
    pretrain: TrainResult | None
    prune: TrainResult
    finetune: TrainResult


def prune_fine_grained(
    model: nn.Module,
    loss: TrainingLoss,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    target_kept: float,
    method: str = "harp",
    prune: TrainConfig,
    finetune: TrainConfig,
    pretrain: TrainConfig | None = None,
    gamma: IncrementalGamma | None = None,
    kept_init: float | None = None,
    alpha: float = 0.1,
    ignored_layers: Iterable[nn.Module] = (),
    val_attack: Attack | None = None,
    progress: bool = False,
    strict: bool = True,
) -> PhaseResult:
    """Unstructured HARP/HYDRA/LWM end to end: (pre-train) → prune → fine-tune with fixed masks."""
    pretrained = None
    if pretrain is not None:
        pretrained = fit(model, loss, train_loader, val_loader, pretrain, val_attack=val_attack,
                         progress=progress, description="pre-train")
    masks = attach_masks(model, target_kept, method=method, kept_init=kept_init, alpha=alpha,
                         ignored_layers=ignored_layers)
    pruned = train_masks(model, masks, loss, train_loader, val_loader, prune, gamma=gamma,
                         val_attack=val_attack, progress=progress, strict=strict)
    tuned = fit(model, loss, train_loader, val_loader, finetune, val_attack=val_attack,
                progress=progress, description=f"{method} fine-tune")
    return PhaseResult(masks, sparsity_report(masks), pretrained, pruned, tuned)
