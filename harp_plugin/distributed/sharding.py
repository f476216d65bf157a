"""Which data each rank sees: a DistributedSampler for training, strided batches for evaluation."""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

from torch.utils.data import DataLoader, DistributedSampler

from harp_plugin.distributed.context import active, rank, world_size

Batch = TypeVar("Batch")


def shard_training_loader(loader: DataLoader, seed: int) -> DataLoader:
    """``loader``'s data split over ranks by a seeded ``DistributedSampler``.

    ``loader.batch_size`` stays the global batch: each rank takes an equal share of it, so a
    2-process run takes the same optimiser steps with the same learning rate as 1 process.
    """
    if not active():
        return loader
    ranks = world_size()
    if loader.batch_size is None or loader.batch_size % ranks:
        raise ValueError(
            f"batch_size {loader.batch_size} must be a multiple of the {ranks} processes (each takes an equal share)"
        )
    if len(loader.dataset) < loader.batch_size:
        raise ValueError(
            f"the training split has {len(loader.dataset)} samples, fewer than one global batch of "
            f"{loader.batch_size} for {ranks} processes"
        )
    sampler = DistributedSampler(loader.dataset, num_replicas=ranks, rank=rank(), shuffle=True, seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // ranks, sampler=sampler,
                      num_workers=loader.num_workers)


def set_epoch(loader: Iterable, epoch: int) -> None:
    """Reshuffle a DistributedSampler for ``epoch`` (the same permutation on every rank)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def my_batches(batches: Iterable[Batch]) -> Iterable[Batch]:
    """Batch i goes to rank i mod world size: every rank's share of an evaluation, no padding
    (``batches`` itself in a single process)."""
    if not active():
        return batches
    return _every_nth(batches, world_size(), rank())


def _every_nth(batches: Iterable[Batch], step: int, start: int) -> Iterator[Batch]:
    for index, batch in enumerate(batches):
        if index % step == start:
            yield batch
