"""``--rewind``: the snapshot pruning rounds rewind the surviving weights to.

``init`` is the model as built (after the IBP initialisation in certified training);
``epoch:K`` its state after K pre-training epochs, captured while pre-training runs and
written next to the run's checkpoints, so a resumed run finds it again.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from harp_plugin.robust.checkpoint import load_checkpoint, save_checkpoint
from harp_plugin.robust.hooks import EpochRecord, TrainingHooks

State = dict[str, torch.Tensor]


class EpochSnapshot(TrainingHooks):
    """Wraps a phase's hooks (or none) and saves the model's state at the end of epoch ``epoch``
    (1-based) to ``path``; every other call goes to the wrapped hooks."""

    def __init__(self, epoch: int, path: Path, inner: Optional[TrainingHooks] = None) -> None:
        self.epoch, self.path, self.inner = epoch, Path(path), inner or TrainingHooks()

    def on_batch_start(self, model: nn.Module, batch_index: int, batches_per_epoch: int) -> None:
        self.inner.on_batch_start(model, batch_index, batches_per_epoch)

    def regulariser(self, model: nn.Module) -> Optional[torch.Tensor]:
        return self.inner.regulariser(model)

    def on_epoch_end(self, model: nn.Module, record: EpochRecord) -> None:
        self.inner.on_epoch_end(model, record)
        if record.epoch + 1 == self.epoch:
            save_checkpoint({"model": copy.deepcopy(model.state_dict())}, self.path)

    def selectable(self) -> bool:
        return self.inner.selectable()


def snapshot_path(out_dir: Path, epoch: int) -> Path:
    return Path(out_dir) / f"rewind-epoch{epoch}.pt"


def save_initial(model: nn.Module, out_dir: Path) -> None:
    """``init``: the model before any training."""
    save_checkpoint({"model": copy.deepcopy(model.state_dict())}, snapshot_path(out_dir, 0))


def check_capturable(out_dir: Path, epoch: int | None, checkpoint: Path) -> None:
    """Before a resumed run trains anything: refuse a rewind snapshot that is missing although
    the pre-training checkpoint is already past its epoch (it can never be captured now)."""
    if not epoch or snapshot_path(out_dir, epoch).is_file() or not checkpoint.is_file():
        return
    finished = load_checkpoint(checkpoint, map_location=torch.device("cpu")).get("epoch", -1) + 1
    if finished >= epoch:
        raise ValueError(
            f"rewind epoch {epoch} was never saved ({str(snapshot_path(out_dir, epoch))!r} is missing) and "
            f"{str(checkpoint)!r} has already finished {finished} epochs: resume without --rewind epoch:{epoch}, "
            "or start the run afresh"
        )


def load_snapshot(out_dir: Path, epoch: int, device: torch.device | str) -> State:
    """The saved state of ``epoch``; an error naming it when it was never saved."""
    path = snapshot_path(out_dir, epoch)
    if not path.is_file():
        raise ValueError(
            f"rewind epoch {epoch} was never saved ({str(path)!r} is missing): a run resumed past that "
            "epoch cannot rewind to it; start the run afresh"
        )
    return load_checkpoint(path, map_location=device)["model"]
