"""Certified accuracy through one call; backends; agreement with auto_LiRPA when present."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from certify_nets import prune_channels, residual_net, sequential_net, strided_net, traced_net
from harp_plugin.bounds import compute_bounds
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.bounds.backends import resolve_backend
from harp_plugin.bounds.lirpa import INSTALL_HINT, lirpa_available


def loader_for(model: torch.nn.Module, count: int = 24, seed: int = 0) -> DataLoader:
    """Inputs labelled by the model itself at half of them, randomly at the rest."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 2, 8, 8, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::2] = torch.randint(0, 4, (count // 2,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=10)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_counts_match_a_direct_margin_check(method: str) -> None:
    model = residual_net(3)
    loader = loader_for(model)
    result = certified_accuracy(model, loader, 0.002, method=method, backend="native", progress=False)
    certified = correct = 0
    for x, y in loader:
        bounds = compute_bounds(model, x, 0.002, method=method, y=y)
        scale = 1 + torch.maximum(bounds.lower.abs(), bounds.upper.abs()).amax(1, keepdim=True)
        clears_rounding = bounds.lower > 128 * 2.0**-23 * scale   # 128 float32 ulps, written out
        certified += int(clears_rounding.all(1).sum())
        correct += int((model(x).argmax(1) == y).sum())
    assert (result.certified, result.correct, result.total) == (certified, correct, 24)
    assert 0 < result.certified <= result.correct
    assert result.certified_accuracy == certified / 24 and result.clean_accuracy == correct / 24
    assert set(result.unstable_relus) == {"3", "4.residual.2", "4.post"}
    assert result.relu_neurons["3"] == 24 * 4 * 8 * 8
    json.dumps(result.to_dict())


def test_tighter_method_certifies_at_least_as_many_and_eps_zero_is_clean_accuracy() -> None:
    model = sequential_net(5)
    loader = loader_for(model)
    ibp, crown = (certified_accuracy(model, loader, 0.01, method=m, backend="native", progress=False) for m in ("ibp", "crown"))
    assert crown.certified >= ibp.certified
    assert crown.unstable_fraction <= ibp.unstable_fraction
    exact = certified_accuracy(model, loader, 0.0, method="ibp", backend="native", progress=False)
    assert exact.certified == exact.correct


def test_pruned_model_and_mode_restored() -> None:
    model = sequential_net(1)
    prune_channels(model, torch.rand(1, 2, 8, 8))
    model.train()
    result = certified_accuracy(model, loader_for(model.eval()), 0.001, method="crown", backend="native", progress=False)
    assert result.total == 24 and result.correct >= 12
    model.train()
    certified_accuracy(model, loader_for(model), 0.001, backend="native", progress=False)
    assert model.training


def test_backend_choice() -> None:
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        resolve_backend("fast", "ibp")
    with pytest.raises(ValueError, match="alpha-crown needs auto_LiRPA"):
        resolve_backend("native", "alpha-crown")
    if lirpa_available():
        assert resolve_backend("auto", "crown") == "auto_lirpa"
    else:
        assert resolve_backend("auto", "crown") == "native"
        with pytest.raises(ImportError, match="install 0.7\\+ from source"):
            resolve_backend("auto_lirpa", "crown")


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_native_agrees_with_auto_lirpa(method: str) -> None:
    """Same bounds as auto_LiRPA (IBP to 1e-5, CROWN to 1e-4 relative) and the same certified
    samples, on sequential, registered-residual and hand-written residual models."""
    if not lirpa_available():
        pytest.skip(INSTALL_HINT)
    from harp_plugin.bounds.lirpa import LirpaBounds

    hand_written = traced_net("residual", 4, overlap=False)
    hand_written.pool = nn.AvgPool2d(2)
    for model in (sequential_net(2, pool="none"), residual_net(4), hand_written):
        x = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(1))
        y = torch.arange(6) % 4
        theirs = LirpaBounds(model, x)(x, 0.01, y, method)
        ours = compute_bounds(model, x, 0.01, method=method, y=y, intersect=False)
        tolerance = 1e-5 if method == "ibp" else 1e-4
        torch.testing.assert_close(ours.lower, theirs.lower, atol=tolerance, rtol=tolerance)
        assert torch.equal(ours.certified(), theirs.certified())


def test_auto_lirpa_crown_runs_through_input_normalisation() -> None:
    """auto_LiRPA 0.7.1's CROWN raised a shape error on this net at ε = 0.05 (normalisation as
    written); the adapter hands it the normalisation as a 1×1 convolution, and the bounds
    agree with the native ones."""
    if not lirpa_available():
        pytest.skip(INSTALL_HINT)
    from harp_plugin.bounds.lirpa import LirpaBounds

    model = strided_net(3, channels=1)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 4
    theirs = LirpaBounds(model, x)(x, 0.05, y, "crown")
    ours = compute_bounds(model, x, 0.05, method="crown", y=y, intersect=False)
    torch.testing.assert_close(ours.lower, theirs.lower, atol=1e-4, rtol=1e-4)
    assert torch.equal(ours.certified(), theirs.certified())


def test_native_max_pool_crown_is_at_least_as_tight_as_auto_lirpa() -> None:
    """With max pooling, CROWN re-bounds every neuron a pool reads (auto_LiRPA only the unstable
    ones), so its margins may be tighter, never looser."""
    if not lirpa_available():
        pytest.skip(INSTALL_HINT)
    from harp_plugin.bounds.lirpa import LirpaBounds

    model = traced_net("residual", 5, overlap=False)
    x = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(6) % 4
    theirs = LirpaBounds(model, x)(x, 0.01, y, "crown")
    ours = compute_bounds(model, x, 0.01, method="crown", y=y, intersect=False)
    assert (ours.lower >= theirs.lower - 1e-4 * (1 + theirs.lower.abs())).all()
    assert (ours.certified() | ~theirs.certified()).all()


class _FixedMask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def test_auto_lirpa_bounds_a_parametrized_masked_model_like_its_folded_twin() -> None:
    """Masks carried as parametrizations (how HARP/HYDRA/LWM hold them) break auto_LiRPA's jit
    tracer; the adapter folds them on its copy. Expected: the bounds of a plain model whose
    weights were multiplied by the mask by hand; the user's model keeps its parametrization."""
    if not lirpa_available():
        pytest.skip(INSTALL_HINT)
    from torch.nn.utils import parametrize

    from harp_plugin.bounds.lirpa import LirpaBounds

    masked = sequential_net(3, pool="none")
    folded = sequential_net(3, pool="none")
    conv = next(m for m in masked.modules() if isinstance(m, nn.Conv2d))
    mask = (torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    with torch.no_grad():
        next(m for m in folded.modules() if isinstance(m, nn.Conv2d)).weight.mul_(mask)
    parametrize.register_parametrization(conv, "weight", _FixedMask(mask))
    x = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    y = torch.arange(4)
    theirs = LirpaBounds(masked, x)(x, 0.01, y, "ibp")
    reference = compute_bounds(folded, x, 0.01, method="ibp", y=y, intersect=False)
    torch.testing.assert_close(theirs.lower, reference.lower, atol=1e-5, rtol=1e-5)
    assert parametrize.is_parametrized(conv, "weight")
    torch.testing.assert_close(masked(x), folded(x), msg="the user's model still computes with its mask")
