"""Channel pruning end to end: (pre-train) → score channels → remove them → fine-tune."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.schedulers.geometric import GeometricScheduler
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.taylor import AdversarialTaylorImportance, accumulate_gradients, accumulate_hessian
from harp_plugin.distributed import RankAveragedImportance, average_gradients, from_main
from harp_plugin.distributed import active as distributed_active
from harp_plugin.models.device import model_device
from harp_plugin.models.validation import final_classifier
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import StandardLoss, TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult, fit

if TYPE_CHECKING:
    from harp_plugin.certify.rewind import WeightRewinder



@dataclass
class ChannelResult:
    """Training histories and the model size before and after channel removal."""

    prune: TrainResult | None
    finetune: TrainResult
    parameters_before: int
    parameters_after: int


def remove_channels(
    model: nn.Module,
    importance: tp.importance.Importance,
    pruning_ratio: float,
    example_inputs: torch.Tensor,
    *,
    loss: TrainingLoss | None = None,
    train_loader: DataLoader | None = None,
    val_loader: DataLoader | None = None,
    prune: TrainConfig | None = None,
    classifier: nn.Module | None = None,
    val_attack: Attack | None = None,
    progress: bool = False,
    strict: bool = True,
    gradient_batches: int = 4,
    rounds: int = 1,
    between_rounds: Callable[[int], None] | None = None,
    rewinder: WeightRewinder | None = None,
) -> TrainResult | None:
    """Physically remove ``pruning_ratio`` of the channels with ``tp.MetaPruner``, in place.

    Whatever the importance needs first happens here: a :class:`HarpImportance` is fitted
    (``prune`` config) and brings its learned per-layer ratios; an adversarial Taylor
    importance collects ∂L_adv/∂θ, Torch-Pruning's plain Taylor ∂L_clean/∂θ and its Hessian
    criterion per-sample ∂L_clean/∂θ of ``8 × gradient_batches`` samples (again before every
    round); any other importance prunes uniformly as is. With ``rounds`` > 1 the ratio
    is reached geometrically (the same share of the remaining channels each round, methods.md
    §4) and ``between_rounds(k)`` runs after every round but the last — retraining, so that a
    state-dependent importance such as stability scores the retrained model. The final
    classifier is always ignored (it would lose classes). With a ``rewinder`` (built on this
    model before pruning) the surviving weights are rewound after every round, before
    ``between_rounds``. Parameters are replaced: rebuild any
    optimiser afterwards. Returns the score training's history for HARP/HYDRA, else None.

    Under torch.distributed every rank removes the same channels: scores are averaged over
    ranks before Torch-Pruning ranks them, gradients for Taylor criteria are averaged, and
    HARP's learned ratios are rank 0's.
    """
    if not 0.0 <= pruning_ratio < 1.0:
        raise ValueError(f"pruning_ratio must be in [0, 1), got {pruning_ratio}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if rounds > 1 and isinstance(importance, HarpImportance):
        raise ValueError("HarpImportance learns its ratios for one removal: use rounds=1 (fit again to prune more)")
    classifier = classifier if classifier is not None else final_classifier(model)
    example_inputs = example_inputs.to(model_device(model))
    trained, ratios = None, None
    if isinstance(importance, HarpImportance):
        trained = importance.fit(model, train_loader, loss=loss, val_loader=val_loader, config=prune,
                                 example_inputs=example_inputs, ignored_layers=[classifier],
                                 val_attack=val_attack, progress=progress, strict=strict)
        ratios = importance.pruning_ratio_dict(model, example_inputs)
        ratios = dict(zip(ratios, from_main(list(ratios.values()))))  # one decision for every rank
    ranking = RankAveragedImportance(importance) if distributed_active() else importance
    pruner = tp.MetaPruner(model, example_inputs, importance=ranking, pruning_ratio=pruning_ratio,
                           pruning_ratio_dict=ratios, ignored_layers=[classifier], iterative_steps=rounds,
                           iterative_pruning_ratio_scheduler=GeometricScheduler(rate=None))
    for round_index in range(rounds):
        if isinstance(importance, tp.importance.GroupTaylorImportance):
            _taylor_gradients(model, importance, loss, train_loader, gradient_batches)
            average_gradients(model.parameters())
        if isinstance(importance, tp.importance.GroupHessianImportance):
            if train_loader is None:
                raise ValueError("GroupHessianImportance needs train_loader for its per-sample gradients")
            accumulate_hessian(model, train_loader, StandardLoss(), importance, 8 * gradient_batches)
        if rewinder is None:
            pruner.step()
        else:
            rewinder.step(pruner)
            rewinder.rewind()
        model.zero_grad(set_to_none=True)
        if between_rounds is not None and round_index < rounds - 1:
            between_rounds(round_index)
    return trained


def _taylor_gradients(
    model: nn.Module, importance: tp.importance.Importance, loss: TrainingLoss | None,
    train_loader: DataLoader | None, batches: int,
) -> None:
    if train_loader is None or (loss is None and isinstance(importance, AdversarialTaylorImportance)):
        raise ValueError(f"{type(importance).__name__} needs train_loader (and loss) for its gradients")
    gradient_loss = loss if isinstance(importance, AdversarialTaylorImportance) else StandardLoss()
    accumulate_gradients(model, train_loader, gradient_loss, batches)


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
    """Prune ``model`` to ``target_kept`` of its channels in place, then fine-tune it."""
    before = sum(p.numel() for p in model.parameters())
    trained = remove_channels(
        model, importance, 1.0 - target_kept, example_inputs, loss=loss, train_loader=train_loader,
        val_loader=val_loader, prune=prune, classifier=classifier, val_attack=val_attack,
        progress=progress, strict=strict,
    )
    tuned = fit(model, loss, train_loader, val_loader, finetune, val_attack=val_attack, progress=progress,
                description="channel fine-tune")
    return ChannelResult(trained, tuned, before, sum(p.numel() for p in model.parameters()))
