"""The certified training loss against a from-scratch computation on a tiny batch.

The margin bounds come from ``reference_bounds`` (IBP/CROWN written from their
definitions), the ramp from its closed form, the cross-entropy from log(1 + Σ e^(−m)):
κ·CROWN-IBP + (1 − κ)·IBP with κ = 1 − ε/ε_max, never the other way round; in train mode
BatchNorm is bounded with the batch's statistics, the ones the forward pass uses.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harp_plugin.certify import margin_matrix
from harp_plugin.certify.losses import CertifiedLoss, EpsilonRampHooks, EpsilonSchedule, StabilityRegulariser
from reference_bounds import ReferenceBounds, random_mlp

X = torch.rand(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
Y = torch.tensor([0, 1, 2, 1])


def closed_form_ramp(t: float) -> float:
    """t⁴ scaled to join the line (10t − 3)/7 at t = 0.4 with equal value (1/7) and slope (10/7)."""
    return 625 * t**4 / 112 if t <= 0.4 else (10 * t - 3) / 7


@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.4, 0.55, 0.8, 1.0])
def test_ramp_follows_its_closed_form(t: float) -> None:
    schedule = EpsilonSchedule(0.3, warmup_epochs=2, ramp_epochs=5)
    assert schedule(2 + 5 * t) == pytest.approx(0.3 * closed_form_ramp(t), abs=1e-12)


def test_eps_is_zero_through_warmup_then_ramps_by_batch_and_stays_at_the_maximum() -> None:
    loss = CertifiedLoss(0.3, warmup_epochs=2, ramp_epochs=5)
    assert loss.set_progress(1, 9, 10) == 0.0
    assert loss.set_progress(3, 5, 10) == pytest.approx(0.3 * closed_form_ramp(1.5 / 5), abs=1e-12)
    assert loss.set_progress(9, 0, 10) == pytest.approx(0.3)


def reference_loss(model: nn.Sequential, eps: float, kappa: float, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor:
    """Mean over the batch of log(1 + Σ_j exp(−m_j)), m = κ·CROWN-IBP + (1 − κ)·IBP margins."""
    values = []
    for i in range(X.shape[0]):
        box = ((X[i] - eps).clamp(min=lower), (X[i] + eps).clamp(max=upper))
        C = margin_matrix(Y[i:i + 1], 3).double()[0]
        ibp = ReferenceBounds(model, *box, "ibp", True).output(C, "ibp", True)[0]
        crown_ibp = ReferenceBounds(model, *box, "crown-ibp", False).output(C, "crown-ibp", False)[0]
        margin = kappa * crown_ibp + (1 - kappa) * ibp
        values.append(torch.log1p(torch.exp(-margin).sum()))
    return torch.stack(values).mean()


@pytest.mark.parametrize("progress", [0.5, 0.8])
def test_crown_ibp_loss_mixes_kappa_crown_ibp_with_one_minus_kappa_ibp(progress: float) -> None:
    model = random_mlp(7, widths=(2, 8, 8, 3))
    loss = CertifiedLoss(0.5, method="crown-ibp", warmup_epochs=0, ramp_epochs=1)
    eps = loss.set_progress(0, int(progress * 100), 100)
    kappa = 1 - eps / 0.5
    assert 0 < kappa < 1 and abs(kappa - 0.5) > 0.1
    expected, swapped = reference_loss(model, eps, kappa), reference_loss(model, eps, 1 - kappa)
    assert abs(expected - swapped) > 1e-3, "the batch must tell κ from 1 − κ"
    torch.testing.assert_close(loss(model, X, Y), expected, atol=1e-9, rtol=1e-9)


def test_ibp_loss_and_crown_ibp_at_full_eps_are_the_ibp_margin_loss() -> None:
    model = random_mlp(7, widths=(2, 8, 8, 3))
    expected = reference_loss(model, 0.2, 0.0)
    for method in ("ibp", "crown-ibp"):
        loss = CertifiedLoss(0.2, method=method, warmup_epochs=0, ramp_epochs=1)
        loss.set_progress(1, 0, 10)
        torch.testing.assert_close(loss(model, X, Y), expected, atol=1e-9, rtol=1e-9)
    mid_ramp = CertifiedLoss(0.5, method="ibp", warmup_epochs=0, ramp_epochs=1)
    eps = mid_ramp.set_progress(0, 1, 2)
    torch.testing.assert_close(mid_ramp(model, X, Y), reference_loss(model, eps, 0.0), atol=1e-9, rtol=1e-9)


def test_the_data_domain_of_the_loss_is_configurable() -> None:
    model = random_mlp(7, widths=(2, 8, 8, 3))
    loss = CertifiedLoss(0.5, method="crown-ibp", warmup_epochs=0, ramp_epochs=1, lower=-1.0, upper=2.0)
    eps = loss.set_progress(0, 1, 2)
    expected = reference_loss(model, eps, 1 - eps / 0.5, lower=-1.0, upper=2.0)
    assert abs(expected - reference_loss(model, eps, 1 - eps / 0.5)) > 1e-3
    torch.testing.assert_close(loss(model, X, Y), expected, atol=1e-9, rtol=1e-9)


def test_during_warmup_the_loss_is_the_clean_cross_entropy() -> None:
    model = random_mlp(7, widths=(2, 8, 8, 3))
    loss = CertifiedLoss(0.2, warmup_epochs=1, ramp_epochs=1)
    assert loss.set_progress(0, 3, 4) == 0.0
    log_probs = model(X) - model(X).exp().sum(1, keepdim=True).log()
    torch.testing.assert_close(loss(model, X, Y), -log_probs[torch.arange(4), Y].mean())


def reference_rs_penalty(model: nn.Sequential, eps: float, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor:
    """L_RS = −mean over all hidden channels of the batch mean of tanh(1 + l·u) (IBP bounds)."""
    per_sample = []
    for i in range(X.shape[0]):
        box = ((X[i] - eps).clamp(min=lower), (X[i] + eps).clamp(max=upper))
        pre = ReferenceBounds(model, *box, "ibp", True).pre
        per_sample.append(torch.cat([torch.tanh(1 + low * high) for low, high in pre]))
    return -torch.stack(per_sample).mean(0).mean()


def test_stability_term_adds_weight_times_the_rs_penalty() -> None:
    model = random_mlp(7, widths=(2, 8, 8, 3))
    penalty = reference_rs_penalty(model, 0.1)
    plain = CertifiedLoss(0.1, method="ibp", warmup_epochs=0, ramp_epochs=0)
    regularised = CertifiedLoss(0.1, method="ibp", warmup_epochs=0, ramp_epochs=0, stability_weight=0.5)
    torch.testing.assert_close(regularised(model, X, Y) - plain(model, X, Y), 0.5 * penalty, atol=1e-9, rtol=1e-9)
    regulariser = StabilityRegulariser(0.1, mode="rs", weight=0.3)
    torch.testing.assert_close(regulariser(model, X), 0.3 * penalty, atol=1e-9, rtol=1e-9)
    wide, wide_penalty = StabilityRegulariser(0.1, mode="rs", weight=1.0, lower=-1.0, upper=2.0), \
        reference_rs_penalty(model, 0.1, -1.0, 2.0)
    assert abs(wide_penalty - penalty) > 1e-5
    torch.testing.assert_close(wide(model, X), wide_penalty, atol=1e-9, rtol=1e-9)


def test_defaults_and_bad_settings() -> None:
    """The paper's defaults: ε = 0 for 10 epochs, then a 50-epoch ramp."""
    loss = CertifiedLoss(0.1)
    assert loss.name == "certified-crown-ibp"
    assert loss.set_progress(9, 0, 1) == 0.0 and 0 < loss.set_progress(10, 1, 2) < 1e-3
    assert loss.set_progress(59, 0, 1) < 0.1 and loss.set_progress(60, 0, 1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="supports 'ibp' and 'crown-ibp', not 'crown'"):
        CertifiedLoss(0.1, method="crown")
    for kwargs in ({"warmup_epochs": -1}, {"ramp_epochs": -1}):
        with pytest.raises(ValueError, match="warmup_epochs and ramp_epochs must be >= 0"):
            EpsilonSchedule(0.1, **kwargs)
    with pytest.raises(ValueError, match="the model has no ReLU"):
        StabilityRegulariser(0.1)(nn.Sequential(nn.Linear(2, 3)).double(), X)


def test_an_epoch_at_exactly_the_full_eps_is_selectable() -> None:
    loss = CertifiedLoss(0.1, warmup_epochs=2, ramp_epochs=0)
    hooks = EpsilonRampHooks(loss)
    loss.set_progress(1, 0, 1)
    assert not hooks.selectable()
    assert loss.set_progress(2, 0, 1) == 0.1 and hooks.selectable()


def bn_net() -> nn.Sequential:
    """Linear → BN → ReLU → Linear, with running statistics far from any batch's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    model[1].running_mean.fill_(3.0)
    model[1].running_var.fill_(0.05)
    return model


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_train_mode_bounds_batch_norm_with_the_batch_statistics(method: str) -> None:
    """Reference: an eval-mode copy whose running statistics are this batch's (biased) ones."""
    model = bn_net().train()
    hidden = model[0](X).detach()
    twin = copy.deepcopy(model).eval()
    twin[1].running_mean.copy_(hidden.mean(0))
    twin[1].running_var.copy_(hidden.var(0, unbiased=False))
    twin[1].eps = model[1].eps
    loss = CertifiedLoss(0.1, method=method, warmup_epochs=0, ramp_epochs=1)
    loss.set_progress(0, 1, 2)
    expected = CertifiedLoss(0.1, method=method, warmup_epochs=0, ramp_epochs=1)
    expected.set_progress(0, 1, 2)
    torch.testing.assert_close(loss(model, X, Y), expected(twin, X, Y), atol=1e-9, rtol=1e-9)
    regulariser = StabilityRegulariser(0.1, mode="nrs", weight=1.0)
    torch.testing.assert_close(regulariser(model, X), regulariser(twin, X), atol=1e-9, rtol=1e-9)


def test_at_a_tiny_eps_the_train_mode_loss_is_the_train_mode_cross_entropy() -> None:
    model = bn_net().train()
    clean = F.cross_entropy(copy.deepcopy(model)(X), Y)
    loss = CertifiedLoss(1e-7, method="crown-ibp", warmup_epochs=0, ramp_epochs=0)
    torch.testing.assert_close(loss(model, X, Y), clean, atol=1e-5, rtol=1e-5)


def test_the_crown_ibp_term_is_the_raw_bound_as_in_crown_ibp_training() -> None:
    """out₀ = relu(3x − 1), out₁ = 0 on x ∈ [0, 1], label 0. IBP's margin bound is 0; CROWN-IBP's
    lower line relu(z) ≥ z (u = 2 > −l = 1) gives −1. At ε with κ = 2/7 the mixed margin is −κ,
    so the loss is log(1 + e^κ); intersecting with IBP first would give log 2."""
    first, head = nn.Linear(1, 1).double(), nn.Linear(1, 2).double()
    with torch.no_grad():
        first.weight.fill_(3.0)
        first.bias.fill_(-1.0)
        head.weight.copy_(torch.tensor([[1.0], [0.0]]))
        head.bias.zero_()
    model = nn.Sequential(first, nn.ReLU(), head)
    loss = CertifiedLoss(1.0, method="crown-ibp", warmup_epochs=0, ramp_epochs=1)
    kappa = 1 - loss.set_progress(0, 8, 10)
    assert kappa == pytest.approx(2 / 7)
    value = loss(model, torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([0]))
    assert value.item() == pytest.approx(math.log1p(math.exp(kappa)), abs=1e-12)
