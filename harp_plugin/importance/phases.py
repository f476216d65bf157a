"""The phases of methods.md §1–§2: pre-train → prune (train masks) → fine-tune, as one call.

Selection happens on the validation split only, and during mask training only among
epochs whose masks meet the target; a target that is never met is reported clearly.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.importance.errors import TargetNotReachedError
from harp_plugin.masking import LayerSparsity, MaskSet, attach_masks, sparsity_report
from harp_plugin.masking.hooks import MaskTrainingHooks
from harp_plugin.masking.projection import check_feasible, project_onto_budget
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.certified import CertifiedLoss, EpsilonRampHooks
from harp_plugin.robust.hooks import HookChain, TrainingHooks
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


def settle_epochs(epochs: int) -> int:
    """HARP's last epochs train scores under the projected rates: a quarter, at least one of two or more."""
    return 0 if epochs < 2 else max(1, epochs // 4)


def check_selection(loss: TrainingLoss | None, val_attack: Attack | None) -> None:
    """A CertifiedLoss selects on IBP-certified validation accuracy: a validation attack is an error."""
    if isinstance(loss, CertifiedLoss) and val_attack is not None:
        raise ValueError(
            f"val_attack={val_attack.name!r} with a CertifiedLoss: mask epochs are selected on IBP-certified "
            "validation accuracy then; pass val_attack=None"
        )


def train_masks(
    model: nn.Module,
    masks: MaskSet,
    loss: TrainingLoss | None,
    train_loader: DataLoader | None,
    val_loader: DataLoader | None,
    config: TrainConfig | None,
    *,
    gamma: IncrementalGamma | None = None,
    budget: float | None = None,
    val_attack: Attack | None = None,
    progress: bool = False,
    strict: bool = True,
) -> TrainResult:
    """The prune phase: scores (+ HARP rates) and BN trained, θ frozen; masks frozen after.

    HARP (γ₀ = 0.01 stepped per epoch by default) learns rates for the first epochs, then its
    rates are projected onto the budget (``budget`` as a share of the dense cost, default
    what uniform masks at a_t keep) and the last :func:`settle_epochs` epochs train the
    scores under the projected counts, so the run ends on its budget whatever γ did. Only
    an infeasible budget raises :class:`TargetNotReachedError`. HYDRA trains scores at a_t;
    LWM trains nothing. A HYDRA target never reached raises with ``strict``, else warns.

    With a :class:`CertifiedLoss` the epoch kept is chosen as in certified training: on
    IBP-certified validation accuracy at the loss's full ε, among full-ε epochs only
    (:class:`EpsilonRampHooks`), so ``val_attack`` must be None.
    """
    if masks.method == "lwm":
        masks.freeze()
        return TrainResult()
    missing = [n for n, v in (("loss", loss), ("train_loader", train_loader), ("val_loader", val_loader),
                              ("config", config)) if v is None]
    if missing:
        raise ValueError(f"training {masks.method} masks needs {', '.join(missing)}")
    check_selection(loss, val_attack)
    harp = masks.method == "harp"
    if harp:
        masks.budget = budget
        check_feasible(masks, masks.budget_fraction())
        gamma = IncrementalGamma() if gamma is None else gamma
    settle = settle_epochs(config.epochs) if harp else 0
    trainable = masks.score_parameters() + batchnorm_parameters(model)
    common = dict(val_attack=val_attack, progress=progress)
    with only_trainable(model, trainable):
        result = fit(model, loss, train_loader, val_loader, replace(config, epochs=config.epochs - settle),
                     parameters=trainable, hooks=_mask_hooks(masks, gamma if harp else None, loss, val_loader),
                     description=f"{masks.method} prune", **common)
        if harp:
            result = _project_and_settle(model, masks, loss, train_loader, val_loader, config, settle, result, common)
    if not harp and not result.selected:
        _report_unreached(masks, config, strict)
    masks.freeze()
    return result


def _mask_hooks(
    masks: MaskSet, gamma: IncrementalGamma | None, loss: TrainingLoss, val_loader: DataLoader
) -> TrainingHooks:
    """Mask training's hooks, plus certified selection when the loss is a CertifiedLoss."""
    hooks = MaskTrainingHooks(masks, gamma)
    return HookChain(hooks, EpsilonRampHooks(loss, val_loader)) if isinstance(loss, CertifiedLoss) else hooks


def _project_and_settle(
    model: nn.Module, masks: MaskSet, loss: TrainingLoss, train_loader: DataLoader, val_loader: DataLoader,
    config: TrainConfig, settle: int, learned: TrainResult, common: dict,
) -> TrainResult:
    """Project the learned rates onto the budget, then train the scores under them."""
    masks.projection = project_onto_budget(masks)
    if learned.history:
        learned.history[-1].extras["arrival_error"] = masks.projection.arrival_error
    if settle == 0:
        last = len(learned.history) - 1 if learned.history else None
        return TrainResult(learned.history, learned.best_epoch if learned.selected else last, learned.best_score)
    trainable = masks.score_parameters() + batchnorm_parameters(model)
    settled = fit(model, loss, train_loader, val_loader, replace(config, epochs=settle), parameters=trainable,
                  hooks=_mask_hooks(masks, None, loss, val_loader), description="harp prune (projected rates)", **common)
    offset = len(learned.history)
    for record in settled.history:
        record.epoch += offset
    best = None if settled.best_epoch is None else settled.best_epoch + offset
    return TrainResult(learned.history + settled.history, best, settled.best_score)


def _report_unreached(masks: MaskSet, config: TrainConfig, strict: bool) -> None:
    with torch.no_grad():
        overshoot = float(masks.compression_loss())
    message = (
        f"{masks.method} never reached the target kept fraction {masks.target_kept:.4g} in {config.epochs} "
        f"epochs: L_c = {overshoot:.4f}, the masks keep {masks.kept_cost_fraction():.4f} of the dense "
        f"{masks.costs.unit} (budget {masks.budget_fraction():.4f})"
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
    check_selection(loss, val_attack)
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
