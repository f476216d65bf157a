"""GPU lane: certification on the GPU is sound and agrees with the CPU.

Soundness is checked against an independent computation: the model evaluated in float64 on
the CPU at random points of the ε-ball must lie inside the bounds the lane device computed.
This catches reduced-precision arithmetic (TF32 convolutions or matmuls) leaking into bounds.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.bounds import compute_bounds
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.models import small_cnn

pytestmark = pytest.mark.cuda
EPS = 0.02


def _model_and_data() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = small_cnn(num_classes=4, input_size=12, width=4).eval()
    generator = torch.Generator().manual_seed(1)
    return model, torch.rand(32, 1, 12, 12, generator=generator), torch.arange(32) % 4


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_bounds_on_the_lane_device_contain_float64_outputs(method: str, lane_device: torch.device) -> None:
    model, x, _ = _model_and_data()
    reference = copy.deepcopy(model).double()
    bounds = compute_bounds(model.to(lane_device), x.to(lane_device), EPS, method=method)
    lower, upper = bounds.lower.cpu().double(), bounds.upper.cpu().double()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(20):
            noise = (torch.rand(x.shape, generator=generator) * 2 - 1) * EPS
            corner = torch.sign(torch.rand(x.shape, generator=generator) - 0.5) * EPS
            for delta in (noise, corner):
                outputs = reference((x.double() + delta).clamp(0, 1))
                assert (outputs >= lower).all() and (outputs <= upper).all(), f"{method} bounds violated"


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_certified_accuracy_on_the_lane_device_agrees_with_the_cpu(method: str, lane_device: torch.device) -> None:
    model, x, y = _model_and_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    on_cpu = certified_accuracy(model, loader, EPS, method=method, backend="native", progress=False)
    on_lane = certified_accuracy(model.to(lane_device), loader, EPS, method=method, backend="native", progress=False)
    assert abs(on_lane.certified - on_cpu.certified) <= 1, "float differences may flip at most one borderline image"
    assert on_lane.correct == on_cpu.correct and on_lane.total == on_cpu.total == 32
    assert {p.device.type for p in model.parameters()} == {lane_device.type}, "nothing moved the model back"
