"""PGD-AT, TRADES and MART against their formulas (methods.md §3)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harp_plugin.robust.losses import MARTLoss, PGDATLoss, StandardLoss, TRADESLoss


@pytest.mark.parametrize("loss", [PGDATLoss(0.1, steps=2), TRADESLoss(0.1, steps=2), MARTLoss(0.1, steps=2)])
def test_losses_are_finite_scalars_with_gradients(loss, tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    tiny_model.train()
    value = loss(tiny_model, images[:8], labels[:8])
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert all(p.grad is not None for p in tiny_model.parameters() if p.requires_grad)
    assert tiny_model.training, "the attack must hand the model back in train mode"


def test_at_zero_eps_trades_reduces_to_cross_entropy(tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    tiny_model.eval()  # fixed BN statistics so both sides see the same function
    expected = F.cross_entropy(tiny_model(images[:8]), labels[:8])
    assert torch.allclose(TRADESLoss(0.0, steps=2)(tiny_model, images[:8], labels[:8]), expected, atol=1e-6)


def test_at_zero_eps_pgd_at_is_cross_entropy(tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    tiny_model.eval()
    expected = StandardLoss()(tiny_model, images[:8], labels[:8])
    assert torch.allclose(PGDATLoss(0.0, steps=2)(tiny_model, images[:8], labels[:8]), expected, atol=1e-6)


def test_mart_matches_its_formula_when_the_attack_is_the_identity(tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    tiny_model.eval()
    logits = tiny_model(images[:8])
    probs = F.softmax(logits, dim=1)
    wrong = probs.clone()
    wrong[torch.arange(8), labels[:8]] = -1
    runner_up = wrong.argmax(1)
    boosted = F.cross_entropy(logits, labels[:8]) + F.nll_loss(torch.log(1.0001 - probs + 1e-12), runner_up)
    # x_adv == x: the KL term vanishes, whatever β is
    assert torch.allclose(MARTLoss(0.0, steps=2, beta=5.0)(tiny_model, images[:8], labels[:8]), boosted, atol=1e-5)


def test_trades_kl_term_is_scaled_by_beta(tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    tiny_model.eval()
    torch.manual_seed(0)
    with_beta = TRADESLoss(0.2, steps=3, beta=6.0)(tiny_model, images[:8], labels[:8])
    torch.manual_seed(0)
    without = TRADESLoss(0.2, steps=3, beta=0.0)(tiny_model, images[:8], labels[:8])
    assert with_beta > without


def test_negative_beta_is_rejected() -> None:
    with pytest.raises(ValueError, match="beta .* must be >= 0, got -1"):
        TRADESLoss(0.1, beta=-1)
