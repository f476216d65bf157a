"""The adversarial training loop shared by pre-training, pruning and fine-tuning.

SGD (or Adam) with a cosine learning rate, per-epoch validation (clean and robust, on the
validation split only), the best state chosen by validation robust accuracy among
selectable epochs, atomic checkpoints after every epoch, and resume after an interruption.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harp_plugin.distributed import (
    average_buffers,
    average_gradients,
    broadcast_state,
    gather_objects,
    is_main,
    set_epoch,
    world_size,
)
from harp_plugin.models.device import model_device
from harp_plugin.models.shapes import shape_errors_named
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from harp_plugin.robust.evaluation import predict
from harp_plugin.robust.hooks import EpochRecord, TrainingHooks
from harp_plugin.robust.losses import ProgressAwareLoss, TrainingLoss


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training phase."""

    epochs: int
    lr: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = None
    val_max_batches: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")


@dataclass
class TrainResult:
    """History of every epoch and which one the model was restored to."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None

    @property
    def selected(self) -> bool:
        """False when no epoch was selectable (e.g. a pruning target never reached)."""
        return self.best_epoch is not None


def fit(
    model: nn.Module,
    loss: TrainingLoss,
    train_loader: DataLoader,
    val_loader: DataLoader,
    config: TrainConfig,
    *,
    val_attack: Attack | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
    hooks: TrainingHooks | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place and restore it to its best selectable epoch.

    ``parameters`` restricts what is optimised (HARP's prune phase trains scores, rates
    and BN only). A new optimiser is built on every call, so calling ``fit`` again after
    ``pruner.step()`` never updates the parameters pruning replaced. Training runs where the
    model is; ``device``, if given, must be that device (checkpoints load onto it).

    Under an initialised process group every rank starts from rank 0's state, gradients are
    averaged over ranks after each backward pass and BN statistics before each validation, so
    the ranks stay identical; give each rank its share of the data (``shard_training_loader``).
    """
    hooks = hooks or TrainingHooks()
    device = model_device(model, device)
    trainable = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    if not trainable:
        raise ValueError("fit() got no trainable parameter (all have requires_grad=False)")
    batches = len(train_loader)
    if batches == 0:
        raise ValueError("the training data loader is empty (it yields no batch)")
    optimizer = _make_optimizer(trainable, config)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    progress = progress and is_main()
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        start_epoch, best_state = _restore(state, model, optimizer, scheduler, result, str(checkpoint_path))
        _restore_rng(state, train_loader, device)
    broadcast_state(model)

    for epoch in range(start_epoch, config.epochs):
        model.train()
        set_epoch(train_loader, epoch)
        tally = _LossTally(device)
        bar = tqdm(train_loader, desc=f"{description} {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        try:
            for index, (inputs, labels) in enumerate(bar):
                inputs, labels = inputs.to(device), labels.to(device)
                hooks.on_batch_start(model, index, batches)
                if isinstance(loss, ProgressAwareLoss):
                    loss.set_progress(epoch, index, batches)
                with shape_errors_named(model, inputs):
                    value = loss(model, inputs, labels)
                extra = hooks.regulariser(model)
                total = value + extra if extra is not None else value
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                average_gradients(trainable)
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(trainable, config.grad_clip)
                optimizer.step()
                tally.add(index, value, total, labels.numel())
                if progress:
                    bar.set_postfix(loss=f"{tally.mean():.3f}")
        except Exception:
            tally.check(epoch, config.lr)  # a non-finite loss before it is the cause to report
            raise
        tally.check(epoch, config.lr)
        running, seen = tally.running(), tally.seen
        average_buffers(model)
        running, seen = map(sum, zip(*gather_objects((running, seen))))
        record = _validate(model, val_loader, val_attack, device, config, epoch, running / max(seen, 1), optimizer)
        scheduler.step()
        hooks.on_epoch_end(model, record)
        record.selectable = hooks.selectable()
        result.history.append(record)
        score = _selection_score(record)
        if record.selectable and (result.best_score is None or score > result.best_score):
            result.best_epoch, result.best_score = epoch, score
            best_state = copy.deepcopy(model.state_dict())
        if progress:
            tqdm.write(_describe(description, record, config.epochs))
        if checkpoint_path is not None:
            snapshot = _snapshot(model, optimizer, scheduler, result, best_state, epoch)
            save_checkpoint(snapshot | _rng_state(train_loader, device), checkpoint_path)
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


class _LossTally:
    """The epoch's loss sum and its first non-finite batch, kept on the device: reading them is
    a host-device synchronisation, so the loop reads them once per epoch (or per progress update)."""

    def __init__(self, device: torch.device) -> None:
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_value = torch.zeros((), device=device)
        self.seen = 0

    def add(self, index: int, value: torch.Tensor, total: torch.Tensor, count: int) -> None:
        total = total.detach()
        new = ~torch.isfinite(total) & (self.first_bad < 0)
        self.first_bad = torch.where(new, index, self.first_bad)
        self.bad_value = torch.where(new, total.to(self.bad_value.dtype), self.bad_value)
        self.sum += value.detach().to(torch.float64) * count
        self.seen += count

    def check(self, epoch: int, lr: float) -> None:
        """FloatingPointError naming the first batch whose loss (+ regulariser) was not finite."""
        first = int(self.first_bad)
        if first >= 0:
            raise FloatingPointError(
                f"training loss became {float(self.bad_value)} at epoch {epoch + 1}, batch {first + 1}; "
                f"lower the learning rate (lr={lr})"
            )

    def running(self) -> float:
        return float(self.sum)

    def mean(self) -> float:
        return self.running() / max(self.seen, 1)


def _make_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _validate(
    model: nn.Module,
    loader: DataLoader,
    attack: Attack | None,
    device: torch.device,
    config: TrainConfig,
    epoch: int,
    train_loss: float,
    optimizer: torch.optim.Optimizer,
) -> EpochRecord:
    outcome = predict(
        model, loader, [attack] if attack else [], device, max_batches=config.val_max_batches, progress=False
    )
    return EpochRecord(
        epoch=epoch,
        train_loss=train_loss,
        val_clean_accuracy=outcome.accuracy("clean"),
        val_robust_accuracy=outcome.accuracy(attack.name) if attack else None,
        lr=float(optimizer.param_groups[0]["lr"]),
    )


def _selection_score(record: EpochRecord) -> float:
    """Validation robust accuracy, clean accuracy breaking ties (or alone without an attack)."""
    robust = record.val_robust_accuracy if record.val_robust_accuracy is not None else 0.0
    return robust + 1e-3 * record.val_clean_accuracy


def _describe(description: str, record: EpochRecord, epochs: int) -> str:
    robust = "" if record.val_robust_accuracy is None else f" val robust {record.val_robust_accuracy:.3f}"
    extras = "".join(f" {k} {v:.4g}" for k, v in record.extras.items())
    return (
        f"{description} epoch {record.epoch + 1}/{epochs}: loss {record.train_loss:.3f} "
        f"val clean {record.val_clean_accuracy:.3f}{robust}{extras}"
    )


def _snapshot(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    result: TrainResult,
    best_state: dict[str, torch.Tensor] | None,
    epoch: int,
) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": [asdict(r) for r in result.history],
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "best_model": best_state,
        "world_size": world_size(),
    }


def _rng_state(loader: DataLoader, device: torch.device) -> dict[str, torch.Tensor]:
    """Random states that make a resumed run continue exactly like an uninterrupted one
    (on CUDA the attacks' random starts draw from the device's generator)."""
    state = {"torch_rng": torch.get_rng_state()}
    if isinstance(loader.generator, torch.Generator):
        state["loader_rng"] = loader.generator.get_state()
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, loader: DataLoader, device: torch.device) -> None:
    """Generator states are CPU byte tensors whatever device the checkpoint was loaded onto;
    a CUDA generator state only applies when resuming on CUDA."""
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"].cpu())
    if "loader_rng" in state and isinstance(loader.generator, torch.Generator):
        loader.generator.set_state(state["loader_rng"].cpu())
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def _restore(
    state: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    result: TrainResult,
    source: str,
) -> tuple[int, dict[str, torch.Tensor] | None]:
    required = {"model", "optimizer", "scheduler", "epoch", "history", "best_epoch", "best_score", "best_model"}
    if not required <= set(state):
        raise CheckpointError(f"{source} is not a training checkpoint: missing {sorted(required - set(state))}")
    if state.get("world_size", 1) != world_size():
        raise CheckpointError(
            f"{source} was written by {state.get('world_size', 1)} process(es) and cannot resume with {world_size()}: "
            "the data order and random states are per process; resume with the same number of processes"
        )
    load_model_state(model, state["model"], source)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    result.history = [EpochRecord(**record) for record in state["history"]]
    result.best_epoch, result.best_score = state["best_epoch"], state["best_score"]
    return int(state["epoch"]) + 1, state["best_model"]
