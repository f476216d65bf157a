"""GPU lane: a training checkpoint saved on the GPU resumes on the CPU, and back.

What it catches: RNG states loaded onto the GPU and handed to ``torch.set_rng_state`` (it takes
CPU byte tensors only), optimiser state left on the saving device, a model silently moved.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.models import small_cnn
from harp_plugin.robust.checkpoint import load_checkpoint
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig, fit

pytestmark = pytest.mark.cuda


def _loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(48, 1, 8, 8, generator=generator), torch.arange(48) % 3
    train = DataLoader(TensorDataset(images[:36], labels[:36]), batch_size=12, shuffle=True,
                       generator=torch.Generator().manual_seed(1))
    return train, DataLoader(TensorDataset(images[36:], labels[36:]), batch_size=12)


def _train(device: torch.device, epochs: int, checkpoint: Path) -> tuple[torch.nn.Module, list]:
    torch.manual_seed(0)
    model = small_cnn(num_classes=3, input_size=8, width=4).to(device)
    result = fit(model, PGDATLoss(0.05, steps=2), *_loaders(), TrainConfig(epochs=epochs, lr=0.05),
                 checkpoint_path=checkpoint, resume=True, progress=False)
    return model, result.history


def test_resume_across_devices_and_back(lane_device: torch.device, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.pt"
    _, first = _train(lane_device, 1, checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["model"]["1.0.weight"].device.type == lane_device.type, "saved from the lane device"

    on_cpu, second = _train(torch.device("cpu"), 2, checkpoint)
    assert [r.epoch for r in second] == [0, 1] and second[0] == first[0], "epoch 0 came from the checkpoint"
    assert {p.device.type for p in on_cpu.parameters()} == {"cpu"}

    back, third = _train(lane_device, 3, checkpoint)
    assert [r.epoch for r in third] == [0, 1, 2] and third[:2] == second
    assert {p.device.type for p in back.parameters()} == {lane_device.type}
    assert load_checkpoint(checkpoint, lane_device)["epoch"] == 2
