"""Certified training losses, the ε ramp and the RS/NRS regularisers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from certify_nets import residual_net, sequential_net
from harp_plugin.bounds import compute_bounds
from harp_plugin.robust.certified import (
    CertifiedLoss, EpsilonRampHooks, EpsilonSchedule, StabilityRegulariser, margin_cross_entropy, ramp_fraction,
)
from harp_plugin.robust.hooks import EpochRecord

X = torch.rand(8, 2, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(8) % 4


def test_ramp_shape() -> None:
    """Closed form: 625·t⁴/112 up to t = 0.4, then (10t − 3)/7 (value 1/7 and slope 10/7 at the joint)."""
    assert ramp_fraction(0) == 0 and ramp_fraction(1) == pytest.approx(1)
    assert ramp_fraction(0.2) == pytest.approx(625 * 0.2**4 / 112) and ramp_fraction(0.4) == pytest.approx(1 / 7)
    assert ramp_fraction(0.7) == pytest.approx(4 / 7) and ramp_fraction(-1) == 0 and ramp_fraction(2) == pytest.approx(1)
    left, right = ramp_fraction(0.4 - 1e-6), ramp_fraction(0.4 + 1e-6)
    assert (right - left) / 2e-6 == pytest.approx(10 / 7, rel=1e-4)
    schedule = EpsilonSchedule(0.1, warmup_epochs=2, ramp_epochs=4)
    assert schedule(1.99) == 0 and schedule(6) == pytest.approx(0.1) and schedule(4) == pytest.approx(0.1 * 2 / 7)
    with pytest.raises(ValueError, match="eps must be"):
        EpsilonSchedule(-0.1)


def test_robust_ce_is_clean_ce_at_zero_eps_and_bounds_it_above() -> None:
    model = sequential_net(0).eval()
    logits = model(X)
    exact = compute_bounds(model, X, 0.0, method="ibp", y=Y).lower
    torch.testing.assert_close(margin_cross_entropy(exact), F.cross_entropy(logits, Y), atol=1e-5, rtol=1e-5)
    loss = CertifiedLoss(0.05, method="ibp")
    assert loss(model, X, Y) > F.cross_entropy(logits, Y)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_training_step_reduces_the_loss_in_train_mode(method: str) -> None:
    torch.manual_seed(0)
    model = residual_net(1).train()
    loss_fn = CertifiedLoss(0.02, method=method, warmup_epochs=0, ramp_epochs=2, stability_weight=1e-3)
    assert loss_fn.set_progress(1, 0, 10) == pytest.approx(0.02 * 2 / 7)  # t = 0.5: (10t − 3)/7
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = loss_fn(model, X, Y)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 8)
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_hooks_select_only_full_eps_epochs() -> None:
    loss_fn = CertifiedLoss(0.1, warmup_epochs=1, ramp_epochs=1)
    hooks = EpsilonRampHooks(loss_fn)
    record = EpochRecord(epoch=0, train_loss=0.0, val_clean_accuracy=0.0, val_robust_accuracy=None, lr=0.0)
    loss_fn.set_progress(1, 5, 10)
    hooks.on_epoch_end(None, record)
    assert 0 < record.extras["eps"] < 0.1 and not hooks.selectable()
    loss_fn.set_progress(2, 0, 10)
    assert hooks.selectable()


def test_nrs_regulariser_lowers_instability() -> None:
    torch.manual_seed(0)
    model = sequential_net(2).train()
    reg = StabilityRegulariser(0.05, mode="nrs", weight=1.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    unstable = lambda: sum(compute_bounds(model.eval(), X, 0.05, method="ibp").unstable_counts().values())  # noqa: E731
    before = unstable()
    for _ in range(20):
        model.train()
        loss = reg(model, X)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert unstable() < before
    assert -1 <= reg(model.eval(), X).item() <= 1
    with pytest.raises(ValueError, match="'nrs' and 'rs'"):
        StabilityRegulariser(0.1, mode="count")
