"""The main job: adversarial pre-training → channel pruning → adversarial fine-tuning → report."""
from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from harp_plugin.data import DataSplits, load_dataset, make_loaders
from harp_plugin.importance.channels import remove_channels
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.phases import train_masks
from harp_plugin.masking import attach_masks, remove_masks
from harp_plugin.schedulers.gamma import IncrementalGamma
from harp_plugin.models.validation import check_classifier_output
from harp_plugin.pipeline.config import RunConfig, resolve_device
from harp_plugin.registry import get_registry
from harp_plugin.robust.attacks import Attack, pgd
from harp_plugin.robust.checkpoint import save_checkpoint
from harp_plugin.robust.evaluation import EvaluationReport, evaluate
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, fit


@dataclass
class RunReport:
    """Dense vs pruned on the test split, with the settings and timings that produced them."""

    config: dict[str, Any]
    device: str
    dense: EvaluationReport
    pruned: EvaluationReport
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "device": self.device,
            "dense": self.dense.to_dict(),
            "pruned": self.pruned.to_dict(),
            "seconds": self.seconds,
            "notes": self.notes,
        }


def run(config: RunConfig, log: Callable[[str], None] = print) -> RunReport:
    """Run every phase of ``config``; checkpoints and the report go to ``config.out_dir``."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    out_dir = Path(config.out_dir)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    log(f"[1/5] data: {config.dataset}")
    caps = {k: v for k, v in (("max_train", config.max_train), ("max_eval", config.max_eval)) if v is not None}
    splits = load_dataset(config.dataset, data_dir=config.data_dir, seed=config.seed, download=config.download, **caps)
    train_loader, val_loader, test_loader = make_loaders(splits, config.batch_size, seed=config.seed)
    model = build_model(config, splits).to(device)
    example = next(iter(val_loader))[0][:2].to(device)
    check_classifier_output(model, example, splits.num_classes)
    loss = build_loss(config.train_loss, eps=config.eps, steps=config.train_attack_steps)
    val_attack = pgd(config.eps, steps=config.val_attack_steps)
    eval_attacks = [
        build_attack(name, config.eps, config.eval_attack_steps, splits.num_classes) for name in config.eval_attacks
    ]
    importance = build_importance(config)  # a bad name fails before training
    seconds["data"] = time.perf_counter() - clock

    log(f"[2/5] adversarial pre-training ({config.pretrain_epochs} epochs, {loss.name}, eps={config.eps})")
    clock = time.perf_counter()
    fit(
        model, loss, train_loader, val_loader,
        TrainConfig(epochs=config.pretrain_epochs, lr=config.pretrain_lr),
        val_attack=val_attack, checkpoint_path=out_dir / "pretrain.pt", resume=config.resume,
        device=device, progress=config.progress, description="pre-train",
    )
    save_checkpoint({"model": model.state_dict()}, out_dir / "dense.pt")
    seconds["pretrain"] = time.perf_counter() - clock

    unit = "channels" if config.mode == "channel" else "weights"
    log(f"[3/5] pruning {config.pruning_ratio:.0%} of {unit} with {config.method!r} importance")
    clock = time.perf_counter()
    pruned = copy.deepcopy(model)
    prune_config = TrainConfig(epochs=config.prune_epochs, lr=config.prune_lr)
    masks = None
    if config.mode == "channel":
        prune_history = remove_channels(
            pruned, importance, config.pruning_ratio, example, loss=loss, train_loader=train_loader,
            val_loader=val_loader, prune=prune_config, val_attack=val_attack, progress=config.progress,
        )
    else:
        masks = attach_masks(pruned, importance.target_kept, method=importance.method)
        prune_history = train_masks(
            pruned, masks, loss, train_loader, val_loader, prune_config, gamma=importance.gamma,
            val_attack=val_attack, progress=config.progress,
        )
    check_classifier_output(pruned, example, splits.num_classes)
    seconds["prune"] = time.perf_counter() - clock

    log(f"[4/5] adversarial fine-tuning ({config.finetune_epochs} epochs, fresh optimiser)")
    clock = time.perf_counter()
    fit(
        pruned, loss, train_loader, val_loader,
        TrainConfig(epochs=config.finetune_epochs, lr=config.finetune_lr),
        val_attack=val_attack, checkpoint_path=out_dir / "finetune.pt", resume=config.resume,
        device=device, progress=config.progress, description="fine-tune",
    )
    if masks is not None:
        remove_masks(masks, how="zero")  # θ ⊙ M as plain weights: loads into the dense architecture
    save_checkpoint({"model": pruned.state_dict()}, out_dir / "pruned.pt")
    seconds["finetune"] = time.perf_counter() - clock

    log(f"[5/5] evaluating dense and pruned on {len(test_loader.dataset)} test images")
    clock = time.perf_counter()
    dense_report = evaluate(model, test_loader, eval_attacks, splits.num_classes, device, config.progress, "dense")
    pruned_report = evaluate(pruned, test_loader, eval_attacks, splits.num_classes, device, config.progress, "pruned")
    seconds["evaluate"] = time.perf_counter() - clock
    notes = [] if prune_history is None else [
        f"{config.method} scores trained for {len(prune_history.history)} epochs; "
        f"selected epoch {prune_history.best_epoch} on validation"
    ]
    return RunReport(config.to_dict(), device, dense_report, pruned_report, seconds, notes)


def build_model(config: RunConfig, splits: DataSplits) -> nn.Module:
    """The registered model, sized for the dataset, with the dataset's normalisation inside."""
    options: dict[str, Any] = dict(
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        input_size=splits.input_size,
        mean=splits.mean,
        std=splits.std,
    )
    if config.model_width is not None:
        options["width"] = config.model_width
    return call_with_supported(get_registry().get("models", config.model), options)


def build_importance(config: RunConfig) -> Any:
    """A registered importance; learned ones (HARP, HYDRA, LWM) get their target and γ schedule."""
    importance = call_with_supported(
        get_registry().get("importances", config.method),
        {"target_kept": 1.0 - config.pruning_ratio, "gamma": IncrementalGamma(config.gamma0, config.gamma_period)},
    )
    if config.mode == "unstructured" and not isinstance(importance, HarpImportance):
        raise ValueError(
            f"mode 'unstructured' needs a learned-mask method (harp, hydra, lwm), not {config.method!r}; "
            "lwm is per-layer magnitude pruning"
        )
    return importance


def build_loss(name: str, **options: Any) -> TrainingLoss:
    """A registered training loss; options it does not take (e.g. eps for 'standard') are dropped."""
    return call_with_supported(get_registry().get("losses", name), options)


def build_attack(name: str, eps: float, steps: int, num_classes: int) -> Attack:
    """A registered evaluation attack with whichever of steps/num_classes it accepts."""
    return call_with_supported(
        get_registry().get("attacks", name), {"eps": eps, "steps": steps, "num_classes": num_classes}
    )


def call_with_supported(factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    """Call ``factory`` with the subset of ``options`` its signature names."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return factory(**options)
    return factory(**{k: v for k, v in options.items() if k in parameters})
