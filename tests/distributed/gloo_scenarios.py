"""The two runs the distributed tests compare: a HARP channel run and a stability run.

Run under ``torchrun --nproc_per_node 2`` (gloo, CPU) this file saves each rank's final state
dict to ``OUT/rank{r}.pt``; imported, it gives the single-process reference the same data in
the same order (``reference_loader``), so both sides can be compared.

Both use a network without BatchNorm and a deterministic (clean) loss: per-rank BN batch
statistics and per-rank attack noise would make the runs differ by design, not by bug.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.distributed import shard_training_loader
from harp_plugin.importance.channels import remove_channels
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.robust.losses import StandardLoss
from harp_plugin.robust.training import TrainConfig, fit
from harp_plugin.schedulers.gamma import IncrementalGamma

GLOBAL_BATCH, SEED = 12, 0


def data() -> tuple[TensorDataset, DataLoader, torch.Tensor]:
    """36 training and 12 validation 8×8 images of three classes (a bright band per class)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 3
    images = 0.2 * torch.rand(48, 1, 8, 8, generator=generator)
    for index, label in enumerate(labels.tolist()):
        images[index, 0, 2 * label : 2 * label + 3] += 0.7
    images = images.clamp(0, 1)
    train = TensorDataset(images[:36], labels[:36])
    return train, DataLoader(TensorDataset(images[36:], labels[36:]), batch_size=12), images[:8]


def network() -> nn.Sequential:
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3),
    )


def sharded_loader(train: TensorDataset) -> DataLoader:
    """What a rank trains on: its DistributedSampler share of a global batch of 12."""
    return shard_training_loader(DataLoader(train, batch_size=GLOBAL_BATCH, shuffle=True), SEED)


def reference_loader(train: TensorDataset) -> DataLoader:
    """The single-process equivalent: global batch k is the union of every rank's batch k.

    DistributedSampler draws ``randperm(n)`` seeded with seed + epoch and hands rank r the
    positions r, r + 2, ...; each ``fit`` call here runs one epoch, i.e. epoch 0.
    """
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SEED)).tolist()
    batches = [order[i : i + GLOBAL_BATCH] for i in range(0, len(order), GLOBAL_BATCH)]
    return DataLoader(train, batch_sampler=batches)


def harp_channel_run(train_loader: DataLoader, val_loader: DataLoader, example: torch.Tensor) -> dict:
    """HARP learns scores and rates (1 epoch), removes channels, then fine-tunes 1 epoch."""
    model = network()
    importance = HarpImportance(0.5, "harp", gamma=IncrementalGamma(5.0, period=0.01))
    remove_channels(model, importance, 0.5, example[:1], loss=StandardLoss(), train_loader=train_loader,
                    val_loader=val_loader, prune=TrainConfig(epochs=1, lr=0.1), strict=False)
    fit(model, StandardLoss(), train_loader, val_loader, TrainConfig(epochs=1, lr=0.05), progress=False)
    return model.state_dict()


def stability_run(train_loader: DataLoader, val_loader: DataLoader, example: torch.Tensor) -> dict:
    """Stability (NRS) scores on calibration images, 2 geometric rounds, retraining in between."""
    model = network()
    fit(model, StandardLoss(), train_loader, val_loader, TrainConfig(epochs=1, lr=0.05), progress=False)
    importance = StabilityImportance(model, example, eps=0.05)
    remove_channels(model, importance, 0.5, example[:1], rounds=2, between_rounds=lambda _: fit(
        model, StandardLoss(), train_loader, val_loader, TrainConfig(epochs=1, lr=0.05), progress=False))
    return model.state_dict()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        train, val, example = data()
        loader = sharded_loader(train)
        states = {"harp": harp_channel_run(loader, val, example), "stability": stability_run(loader, val, example)}
        torch.save(states, out / f"rank{dist.get_rank()}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
