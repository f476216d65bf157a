"""Short-warm-up certified training (Shi et al. 2021): IBP initialisation, the tightness and
ReLU-balance regularisers, κ, the ε schedule's checks and collapse detection."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from certify_nets import sequential_net
from harp_plugin.bounds import compute_bounds
from harp_plugin.robust.certified import CertifiedLoss, EpsilonRampHooks, EpsilonSchedule
from harp_plugin.robust.certified_warmup import ibp_initialise, input_radius, relu_balance_loss, tightness_loss
from harp_plugin.models import certified_cnn
from harp_plugin.robust.hooks import EpochRecord

X = torch.rand(8, 2, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(8) % 4


def test_ibp_initialisation_keeps_the_mean_row_l1_norm_at_two() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Conv2d(1, 1, 1), nn.Linear(300, 10))
    classifier_before = model[3].weight.detach().clone()
    bias_before = model[0].bias.detach().clone()
    assert ibp_initialise(model) == ["0", "2"]
    # σ = √(2π)/n ⇒ E|w| = σ·√(2/π) = 2/n ⇒ each row's L1 norm (the IBP radius gain of the layer) ≈ 2
    assert model[0].weight.abs().sum(1).mean().item() == pytest.approx(2.0, rel=0.03)
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 * math.pi) / 400, rel=0.03)
    assert torch.equal(model[3].weight, classifier_before), "the classifier keeps its initialisation"
    assert torch.equal(model[0].bias, bias_before)


def test_tightness_loss_by_hand() -> None:
    wide = (-2 * torch.ones(3, 4), 2 * torch.ones(3, 4))  # radius 2: r0/r = 0.25 → relu(0.5 - 0.25)/0.5 = 0.5
    tight = (torch.zeros(3, 4), torch.ones(3, 4))  # radius 0.5: r0/r = 1 → 0
    loss = tightness_loss({"a": wide, "b": tight}, torch.tensor(0.5))
    assert loss.item() == pytest.approx((0.5 + 0.0) / 2)


def test_relu_balance_loss_by_hand() -> None:
    # centres: active +4, inactive -1, two unstable at 0; mean centre 0.75
    low = torch.tensor([[3.0, -1.5, -1.0, -1.0]])
    high = torch.tensor([[5.0, -0.5, 1.0, 1.0]])
    # means: active 4/4 = 1, inactive 1/4 → ratio 0.25 → relu(0.5 - 0.25)/0.5 = 0.5
    # spreads: active (4 - 0.75)² = 10.5625, inactive (-1 - 0.75)² = 3.0625 → ratio 0.28994
    expected = 0.5 + (0.5 - 3.0625 / 10.5625) / 0.5
    assert relu_balance_loss({"r": (low, high)}).item() == pytest.approx(expected, rel=1e-5)
    balanced = (torch.tensor([[1.0, -3.0, -1.0]]), torch.tensor([[3.0, -1.0, 1.0]]))
    assert relu_balance_loss({"r": balanced}).item() == pytest.approx(0.0, abs=1e-6)
    all_active = (torch.ones(1, 3), 2 * torch.ones(1, 3))
    assert relu_balance_loss({"r": all_active}).item() == 0.0, "undefined ratio: the layer is skipped"


def test_input_radius_is_measured_after_the_models_normalisation() -> None:
    model = certified_cnn(in_channels=1, input_size=8, std=(0.5,))
    x = torch.full((2, 1, 8, 8), 0.5)
    box = (x - 0.1, x + 0.1)
    assert input_radius(model, box).item() == pytest.approx(0.1 / 0.5)


def test_warmup_regularisers_fade_out_at_the_full_eps() -> None:
    torch.manual_seed(0)
    model = sequential_net(0).train()
    plain = CertifiedLoss(0.1, method="ibp", warmup_epochs=0, ramp_epochs=2)
    regularised = CertifiedLoss(0.1, method="ibp", warmup_epochs=0, ramp_epochs=2, warmup_weight=0.5)
    for loss in (plain, regularised):
        loss.set_progress(5, 0, 1)  # past the ramp: full eps
    torch.testing.assert_close(regularised(model, X, Y), plain(model, X, Y))
    for loss in (plain, regularised):
        loss.set_progress(1, 0, 1)  # half-way through the ramp
    assert 0 < plain.eps_now < 0.1
    assert regularised(model, X, Y) >= plain(model, X, Y), "both regularisers are >= 0"


def test_kappa_sets_crown_ibps_share_at_the_full_eps() -> None:
    torch.manual_seed(0)
    model = sequential_net(0).eval()
    ibp = compute_bounds(model, X, 0.05, method="ibp", y=Y).lower
    crown = compute_bounds(model, X, 0.05, method="crown-ibp", y=Y, intersect=False).lower
    mixed = CertifiedLoss(0.05, method="crown-ibp", warmup_epochs=0, ramp_epochs=0, kappa=0.25)
    expected = torch.nn.functional.cross_entropy(
        torch.cat([torch.zeros(8, 1), -(0.25 * crown + 0.75 * ibp)], dim=1), torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(mixed(model, X, Y), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kappa=1.5), r"kappa .* must be in \[0, 1\], got 1.5"),
        (dict(kappa=-0.1), r"kappa .* must be in \[0, 1\], got -0.1"),
        (dict(schedule=EpsilonSchedule(0.2)), "the eps schedule ends at 0.2, above the certified eps 0.1"),
        (dict(warmup_weight=-1.0), "regulariser weights must be >= 0"),
    ],
)
def test_bad_certified_settings_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CertifiedLoss(0.1, **kwargs)


def test_a_negative_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="eps must be a finite number >= 0, got -0.1"):
        EpsilonSchedule(-0.1)


def test_collapse_to_chance_at_full_eps_is_detected_and_described() -> None:
    loss = CertifiedLoss(0.1, method="ibp", warmup_epochs=1, ramp_epochs=1)
    loss.num_classes = 10
    hooks = EpsilonRampHooks(loss)
    loss.set_progress(0, 0, 1)  # eps = 0: a low accuracy during the warm-up is not a collapse
    hooks.on_epoch_end(nn.Identity(), EpochRecord(0, 2.3, 0.1, None, 1e-3))
    assert hooks.collapse_message("pre-train") is None
    loss.set_progress(3, 0, 1)  # full eps
    hooks.on_epoch_end(nn.Identity(), EpochRecord(3, 2.3, 0.9, None, 1e-3))
    assert hooks.collapse_message("pre-train") is None
    hooks.on_epoch_end(nn.Identity(), EpochRecord(4, 2.3, 0.11, None, 1e-3))
    message = hooks.collapse_message("pre-train")
    assert message is not None and "collapsed" in message and "11.0%" in message and "epoch 5" in message


def test_full_eps_epochs_are_scored_by_certified_validation_accuracy() -> None:
    torch.manual_seed(0)
    model = sequential_net(0).eval()
    loss = CertifiedLoss(0.0, method="ibp")  # at eps = 0 the bounds are exact: certified = correct
    hooks = EpsilonRampHooks(loss, val_loader=[(X, Y)])
    record = EpochRecord(0, 1.0, 0.5, None, 1e-3)
    hooks.on_epoch_end(model, record)
    with torch.no_grad():
        correct = (model(X).argmax(1) == Y).float().mean().item()
    assert record.val_robust_accuracy == pytest.approx(correct)
    assert record.extras["val IBP-certified"] == pytest.approx(correct)
