"""Bad input of a distributed job, checked in one process by posing as rank 0 of 2."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import gloo_scenarios as scenarios
import harp_plugin.distributed.sharding as sharding
import harp_plugin.robust.training as training
from harp_plugin.distributed import my_batches, shard_training_loader
from harp_plugin.robust.checkpoint import CheckpointError
from harp_plugin.robust.losses import StandardLoss
from harp_plugin.robust.training import TrainConfig, fit


@pytest.fixture
def two_ranks(monkeypatch) -> None:
    monkeypatch.setattr(sharding, "active", lambda: True)
    monkeypatch.setattr(sharding, "world_size", lambda: 2)
    monkeypatch.setattr(sharding, "rank", lambda: 1)


def _loader(samples: int, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(samples, 1), torch.zeros(samples)), batch_size=batch_size)


def test_each_rank_takes_half_of_the_global_batch(two_ranks) -> None:
    loader = shard_training_loader(_loader(40, 8), seed=3)
    assert loader.batch_size == 4 and isinstance(loader.sampler, DistributedSampler)
    assert (loader.sampler.num_replicas, loader.sampler.rank, loader.sampler.seed) == (2, 1, 3)


@pytest.mark.parametrize(
    ("samples", "batch_size", "message"),
    [(40, 7, "batch_size 7 must be a multiple of the 2 processes"),
     (6, 8, "the training split has 6 samples, fewer than one global batch of 8 for 2 processes")],
)
def test_a_batch_the_ranks_cannot_share_is_refused(two_ranks, samples, batch_size, message) -> None:
    with pytest.raises(ValueError, match=message):
        shard_training_loader(_loader(samples, batch_size), seed=0)


def test_evaluation_batches_are_dealt_round_robin(two_ranks) -> None:
    assert list(my_batches(range(7))) == [1, 3, 5]


def test_a_checkpoint_from_another_world_size_is_refused(tmp_path: Path, monkeypatch) -> None:
    model, (train, val, _) = scenarios.network(), scenarios.data()
    train = DataLoader(train, batch_size=12)
    fit(model, StandardLoss(), train, val, TrainConfig(epochs=1), checkpoint_path=tmp_path / "ck.pt", progress=False)
    monkeypatch.setattr(training, "world_size", lambda: 2)
    with pytest.raises(CheckpointError, match="written by 1 process\\(es\\) and cannot resume with 2"):
        fit(model, StandardLoss(), train, val, TrainConfig(epochs=2), checkpoint_path=tmp_path / "ck.pt",
            resume=True, progress=False)
