"""Models as users have them certify with no registration: torchvision's ResNet-18 at 32×32,
hand-written forwards, and the plugin's own zoo. Every bound is checked against the model
evaluated at corners and random points of the ε-ball (an independent computation)."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from certify_nets import traced_net
from harp_plugin.bounds import compute_bounds, margin_matrix
from harp_plugin.models.cifar_deep import cifar_model_deep
from harp_plugin.models.resnet import resnet18
from harp_plugin.models.small_cnn import small_cnn
from harp_plugin.models.vgg import vgg16_bn

TOL = 1e-4


def calibrated(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """BatchNorm statistics from a few random batches, so activations (and bounds) stay at
    the scale of a trained network instead of growing layer after layer."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, *shape))
    return model.eval()


def check_holds(model: nn.Module, x: torch.Tensor, eps: float, methods: tuple[str, ...], samples: int = 16) -> dict:
    """Margin bounds of each method hold at sampled corners/points; tighter methods are not looser."""
    generator = torch.Generator().manual_seed(1)
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    pick = torch.randint(0, 2, (samples, *x.shape), generator=generator).float()
    pick[samples // 2:] = torch.rand(samples - samples // 2, *x.shape, generator=generator)
    points = (lower + pick * (upper - lower)).flatten(0, 1)
    with torch.no_grad():
        logits = model(points).view(samples, x.shape[0], -1)
        classes = logits.shape[-1]
        y = model(x).argmax(1)
        margins = torch.einsum("bkn,sbn->sbk", margin_matrix(y, classes), logits)
        found = {m: compute_bounds(model, x, eps, method=m, y=y) for m in methods}
    for method, bounds in found.items():
        assert (bounds.lower.unsqueeze(0) <= margins + TOL).all(), f"{method} lower bound violated"
        assert (bounds.upper.unsqueeze(0) >= margins - TOL).all(), f"{method} upper bound violated"
    if "ibp" in found and "crown" in found:
        assert (found["crown"].lower >= found["ibp"].lower - TOL).all()
    return found


def test_torchvision_resnet18_certifies_with_interval_methods() -> None:
    """Full CROWN on ResNet-18 is exercised by benchmarks/bench_certify.py: back-substituting
    thousands of unstable neurons per stage takes minutes on a CPU, too long for the suite."""
    model = calibrated(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    check_holds(model, x, 1e-5, ("ibp", "crown-ibp"))


@pytest.mark.parametrize("kind", ["residual", "branches"])
def test_hand_written_models_certify(kind: str) -> None:
    model = traced_net(kind, 3)
    x = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    found = check_holds(model, x, 0.01, ("ibp", "crown-ibp", "crown"))
    assert found["crown"].certified().any(), "a small ε on a smooth random net certifies some samples"


@pytest.mark.parametrize("build, shape", [
    (lambda: small_cnn(in_channels=1, input_size=28, width=4), (1, 28, 28)),
    (lambda: cifar_model_deep(), (3, 32, 32)),
    (lambda: vgg16_bn(), (3, 32, 32)),
    (lambda: resnet18(width=8), (3, 32, 32)),
])
def test_plugin_models_certify(build, shape) -> None:
    model = calibrated(build(), shape)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(4))
    check_holds(model, x, 1e-4, ("ibp", "crown-ibp"))
