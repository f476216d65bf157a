"""Certified training losses (IBP, CROWN-IBP with the ε ramp) and RS/NRS regularisers.

Every loss follows the project's loss protocol, ``loss(model, x, y) -> scalar Tensor``.
A training loop drives the ε ramp by calling ``loss.set_progress(epoch, batch,
batches_per_epoch)`` before each step (the project's ``fit`` does, for any loss with that
method); without it the loss uses the full ε. Recommended optimiser (methods.md §4): Adam, lr 1e-3, batch 128,
gradient-norm clip 8.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harp_plugin.bounds.engine import BoundResult, compute_bounds
from harp_plugin.bounds.operators import BoundOp
from harp_plugin.bounds.operators.normalization import batch_norm_op
from harp_plugin.bounds.spec import check_eps, input_box
from harp_plugin.bounds.stability import channel_scores
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.robust.certified_warmup import input_radius, relu_balance_loss, tightness_loss
from harp_plugin.robust.hooks import EpochRecord, TrainingHooks

POWER_PHASE = 0.4
"""Fraction of the ramp that follows t⁴; the rest is linear, joined with equal slope."""


def ramp_fraction(t: float) -> float:
    """ε/ε_max at ramp progress t ∈ [0, 1]: a·t⁴ up to 0.4, then linear, C¹ and reaching 1 at t=1."""
    t = min(max(t, 0.0), 1.0)
    scale = 1.0 / (POWER_PHASE**3 * (POWER_PHASE + 4 * (1 - POWER_PHASE)))
    if t <= POWER_PHASE:
        return scale * t**4
    return scale * POWER_PHASE**3 * (POWER_PHASE + 4 * (t - POWER_PHASE))


@dataclass(frozen=True)
class EpsilonSchedule:
    """ε = 0 for ``warmup_epochs``, then the t⁴/linear ramp to ``eps_max`` over ``ramp_epochs``."""

    eps_max: float
    warmup_epochs: float = 10
    ramp_epochs: float = 50

    def __post_init__(self) -> None:
        check_eps(self.eps_max)
        if self.warmup_epochs < 0 or self.ramp_epochs < 0:
            raise ValueError(f"warmup_epochs and ramp_epochs must be >= 0, got {self.warmup_epochs}, {self.ramp_epochs}")

    def __call__(self, epoch: float) -> float:
        if epoch < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return self.eps_max
        return self.eps_max * ramp_fraction((epoch - self.warmup_epochs) / self.ramp_epochs)


@contextmanager
def batch_statistics(model: nn.Module, x: Tensor) -> Iterator[tuple[Tensor, dict[nn.Module, BoundOp]]]:
    """Run the clean forward pass; in train mode, bound each BatchNorm with this batch's
    statistics (what the forward pass normalises with) instead of the running ones."""
    overrides: dict[nn.Module, BoundOp] = {}
    handles = []
    if model.training:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
                handles.append(module.register_forward_hook(_capture(overrides)))
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    yield logits, overrides


def _capture(overrides: dict[nn.Module, BoundOp]):
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        dims = [d for d in range(inputs[0].dim()) if d != 1]
        mean = inputs[0].mean(dims)
        var = inputs[0].var(dims, unbiased=False)
        overrides[module] = batch_norm_op(module, mean, var)

    return hook


def margin_cross_entropy(lower: Tensor) -> Tensor:
    """CE on the negated margin lower bounds with a zero logit for the true class."""
    logits = torch.cat([torch.zeros_like(lower[:, :1]), -lower], dim=1)
    return F.cross_entropy(logits, torch.zeros(lower.shape[0], dtype=torch.long, device=lower.device))


def stability_penalty(model: nn.Module, bounds: BoundResult, mode: str = "nrs") -> Tensor:
    """L_NRS (or L_RS): mean over all ReLU channels of −tanh(1 + l·u/γ²); RS where no BN precedes."""
    graph = bounds.graph
    if graph is None:
        raise ValueError("the stability penalty needs bounds from the native engine (they carry the graph)")
    gammas = {graph.nodes[i].name: graph.batch_norm_before(i) for i in graph.relu_nodes}
    scores = [
        channel_scores(low, high, mode, None if gammas[name] is None else gammas[name].weight)
        for name, (low, high) in bounds.preactivations.items()
    ]
    if not scores:
        raise ValueError("the model has no ReLU: the stability regulariser has nothing to regularise")
    return -torch.cat(scores).mean()


class CertifiedLoss:
    """IBP or CROWN-IBP certified loss with the ε ramp, plus optional regularisers.

    CROWN-IBP mixes the margin bounds as w·CROWN-IBP + (1 − w)·IBP with
    w = κ + (1 − κ)·(1 − ε/ε_max): all CROWN-IBP at ε = 0, down to ``kappa`` at the full ε.
    At ε = 0 the bound is exact, so the loss is the clean cross-entropy. ``warmup_weight``
    λ adds Shi et al.'s tightness and ReLU-balance regularisers with weight λ·(1 − ε/ε_max)
    while ε ramps (:mod:`harp_plugin.robust.certified_warmup`); ``stability_weight`` adds RS/NRS.
    ``schedule`` replaces the ramp given by ``warmup_epochs``/``ramp_epochs``; it may not
    end above ``eps``.
    """

    def __init__(
        self, eps: float, method: str = "crown-ibp", warmup_epochs: float = 10, ramp_epochs: float = 50,
        stability_weight: float = 0.0, stability_mode: str = "nrs", lower: float = 0.0, upper: float = 1.0,
        warmup_weight: float = 0.0, kappa: float = 0.0, schedule: Optional[EpsilonSchedule] = None,
    ) -> None:
        if method not in ("ibp", "crown-ibp"):
            raise ValueError(f"certified training supports 'ibp' and 'crown-ibp', not {method!r}")
        if warmup_weight < 0 or stability_weight < 0:
            raise ValueError(f"regulariser weights must be >= 0, got warmup_weight={warmup_weight}, "
                             f"stability_weight={stability_weight}")
        if not 0.0 <= kappa <= 1.0:
            raise ValueError(f"kappa (CROWN-IBP's share of the bound at the full eps) must be in [0, 1], got {kappa}")
        eps = check_eps(eps)
        if schedule is not None and schedule.eps_max > eps:
            raise ValueError(f"the eps schedule ends at {schedule.eps_max}, above the certified eps {eps}")
        self.schedule = schedule if schedule is not None else EpsilonSchedule(eps, warmup_epochs, ramp_epochs)
        self.method, self.stability_weight, self.stability_mode = method, stability_weight, stability_mode
        self.warmup_weight, self.kappa = warmup_weight, kappa
        self.name = f"certified-{method}"
        self.lower, self.upper = lower, upper
        self.eps_now = self.schedule.eps_max
        self.num_classes: Optional[int] = None

    def set_progress(self, epoch: int, batch: int, batches_per_epoch: int) -> float:
        """Move the ramp to ``epoch + batch / batches_per_epoch``; returns the ε now in use."""
        self.eps_now = self.schedule(epoch + batch / max(batches_per_epoch, 1))
        return self.eps_now

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with batch_statistics(model, x) as (logits, overrides):
            self.num_classes = logits.shape[1]
            if self.eps_now == 0 and self.stability_weight == 0:
                return F.cross_entropy(logits, y)
            kwargs = dict(y=y, lower=self.lower, upper=self.upper, overrides=overrides)
            ibp = compute_bounds(model, x, self.eps_now, method="ibp", **kwargs)
            lower = ibp.lower
            progress = self.eps_now / self.schedule.eps_max if self.schedule.eps_max else 1.0
            crown_share = self.kappa + (1 - self.kappa) * (1 - progress)
            if self.method == "crown-ibp" and crown_share > 0:
                crown = compute_bounds(model, x, self.eps_now, method="crown-ibp", intersect=False, **kwargs)
                lower = crown_share * crown.lower + (1 - crown_share) * lower
            loss = margin_cross_entropy(lower)
            if self.stability_weight:
                loss = loss + self.stability_weight * stability_penalty(model, ibp, self.stability_mode)
            fading = self.warmup_weight * (1 - progress)
            if fading > 0 and self.eps_now > 0:
                reference = input_radius(model, input_box(x, self.eps_now, self.lower, self.upper))
                regulariser = tightness_loss(ibp.preactivations, reference) + relu_balance_loss(ibp.preactivations)
                loss = loss + fading * regulariser
            return loss


class StabilityRegulariser:
    """``weight · L_NRS`` (or L_RS) at radius ``eps`` from IBP bounds: add to any training loss
    (1e-2 with an adversarial loss, 1e-3 with a certified one, methods.md §4)."""

    def __init__(self, eps: float, mode: str = "nrs", weight: float = 1e-2, lower: float = 0.0, upper: float = 1.0) -> None:
        if mode not in ("nrs", "rs"):
            raise ValueError(f"the stability regulariser supports 'nrs' and 'rs', not {mode!r}")
        self.eps, self.mode, self.weight = check_eps(eps), mode, weight
        self.lower, self.upper = lower, upper

    def __call__(self, model: nn.Module, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        with batch_statistics(model, x) as (_, overrides):
            bounds = compute_bounds(model, x, self.eps, method="ibp", lower=self.lower, upper=self.upper, overrides=overrides)
        return self.weight * stability_penalty(model, bounds, self.mode)


COLLAPSE_FACTOR = 1.5
"""Validation accuracy at most this multiple of chance (1/classes) counts as collapsed."""


class EpsilonRampHooks(TrainingHooks):
    """For the project's ``fit`` loop (which calls ``set_progress`` itself): logs the ε of each
    epoch, lets only epochs trained at the full ε be selected as the best checkpoint, and
    records collapse: an epoch at the full ε whose validation accuracy is at chance (short
    IBP training can end in a constant classifier that no bound can improve).

    With ``val_loader``, every full-ε epoch is scored by its IBP-certified accuracy on it at
    the full ε: that becomes the epoch's robust validation accuracy, so the best checkpoint is
    the most certifiable one (give ``fit`` no ``val_attack`` then: the attack would be wasted).
    """

    def __init__(self, loss: CertifiedLoss, val_loader: Optional[Iterable[tuple[Tensor, Tensor]]] = None) -> None:
        self.loss, self.val_loader = loss, val_loader
        self.collapsed: list[EpochRecord] = []

    def on_epoch_end(self, model: nn.Module, record: EpochRecord) -> None:
        record.extras["eps"] = self.loss.eps_now
        if self.val_loader is not None and self.selectable():
            record.val_robust_accuracy = certified_accuracy(
                model, self.val_loader, self.loss.schedule.eps_max, method="ibp", progress=False,
                lower=self.loss.lower, upper=self.loss.upper,
            ).certified_accuracy
            record.extras["val IBP-certified"] = record.val_robust_accuracy
        classes = self.loss.num_classes
        if self.selectable() and classes and record.val_clean_accuracy <= COLLAPSE_FACTOR / classes:
            self.collapsed.append(record)

    def selectable(self) -> bool:
        return self.loss.eps_now >= self.loss.schedule.eps_max

    def collapse_message(self, phase: str) -> Optional[str]:
        """A sentence for the log and the report when any full-ε epoch collapsed, else None."""
        if not self.collapsed:
            return None
        first = self.collapsed[0]
        return (
            f"{phase}: certified training collapsed to a near-constant classifier: validation accuracy "
            f"{first.val_clean_accuracy:.1%} (chance {1 / self.loss.num_classes:.0%}) after epoch "
            f"{first.epoch + 1} at the full eps = {self.loss.schedule.eps_max:g} "
            f"({len(self.collapsed)} such epoch(s)); lengthen the eps ramp, keep the IBP initialisation "
            f"and warm-up regularisers, or lower the learning rate"
        )
