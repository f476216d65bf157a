"""Losses, attacks and model selection checked against answers computed here, from scratch.

* The adversarial losses get a fixed, known x_adv (an ``Attack`` that returns it), so their
  values can be recomputed from the formulas of the papers: TRADES' KL direction, MART's
  boosted CE and weighted KL, PGD-AT's CE on x_adv.
* Attacks run on a 1-D threshold classifier whose adversarial examples are known exactly, so
  robust accuracy has an exact expected value strictly below clean accuracy.
* ``fit`` is driven through a scripted sequence of validation accuracies: it must restore
  the best epoch, and it must report the ramp progress (epoch, batch, batches) to the loss.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.robust.attacks import Attack, apgd, fgsm, pgd
from harp_plugin.robust.evaluation import evaluate
from harp_plugin.robust.losses import MARTLoss, PGDATLoss, TRADESLoss
from harp_plugin.robust.training import TrainConfig, fit

GENERATOR = torch.Generator().manual_seed(0)
X = torch.rand(6, 4, generator=GENERATOR)
X_ADV = (X + 0.2 * torch.randn(6, 4, generator=GENERATOR)).clamp(0, 1)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


def linear_model() -> nn.Linear:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.mul_(6.0)  # confident, distinct predictions on X and X_ADV
    return model


def fixed_attack() -> Attack:
    """An 'attack' that returns X_ADV for X (fails loudly on any other input)."""

    def build(model: nn.Module):
        def run(inputs: Tensor, labels: Tensor) -> Tensor:
            assert torch.equal(inputs, X)
            return X_ADV.clone()

        return run

    return Attack("fixed", 0.2, build)


def with_fixed_attack(loss):
    loss.attack = fixed_attack()
    return loss


def kl_rows(p: Tensor, q: Tensor) -> Tensor:
    """KL(p ‖ q) per row, from the definition Σ_k p_k (log p_k − log q_k)."""
    return (p * (p.log() - q.log())).sum(1)


def test_pgd_at_is_cross_entropy_on_the_adversarial_inputs() -> None:
    model = linear_model()
    expected = -F.softmax(model(X_ADV), 1)[torch.arange(6), Y].log().mean()
    value = with_fixed_attack(PGDATLoss(0.2))(model, X, Y)
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)


def test_trades_is_clean_ce_plus_beta_kl_of_natural_to_adversarial() -> None:
    model = linear_model()
    p_nat, p_adv = F.softmax(model(X), 1), F.softmax(model(X_ADV), 1)
    clean_ce = -p_nat[torch.arange(6), Y].log().mean()
    forward, reverse = kl_rows(p_nat, p_adv).mean(), kl_rows(p_adv, p_nat).mean()
    assert abs(forward - reverse) > 0.05, "the fixture must tell the two KL directions apart"
    value = with_fixed_attack(TRADESLoss(0.2, beta=6.0))(model, X, Y)
    torch.testing.assert_close(value, clean_ce + 6.0 * forward, atol=1e-5, rtol=1e-5)


def test_mart_matches_its_formula_with_a_nonzero_kl_term() -> None:
    model = linear_model()
    p_nat, p_adv = F.softmax(model(X), 1), F.softmax(model(X_ADV), 1)
    rows = torch.arange(6)
    wrong = p_adv.clone()
    wrong[rows, Y] = -1.0
    runner_up = wrong.argmax(1)
    boosted = (-p_adv[rows, Y].log() - (1.0001 - p_adv[rows, runner_up]).log()).mean()
    weighted_kl = (kl_rows(p_nat, p_adv) * (1 - p_nat[rows, Y])).mean()
    assert weighted_kl > 0.05
    value = with_fixed_attack(MARTLoss(0.2, beta=5.0))(model, X, Y)
    torch.testing.assert_close(value, boosted + 5.0 * weighted_kl, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- attacks with a known answer

def threshold_model() -> nn.Sequential:
    """Class 1 iff the single pixel x > 0.5 (logits 0.5 − x and x − 0.5)."""
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    return nn.Sequential(nn.Flatten(), layer).eval()


PIXELS = torch.tensor([0.05, 0.3, 0.45, 0.56, 0.7, 0.95]).view(6, 1, 1, 1)
LABELS = (PIXELS.flatten() > 0.5).long()


@pytest.mark.parametrize("make", [lambda e: pgd(e, steps=10), lambda e: fgsm(e), lambda e: apgd(e, steps=10)],
                         ids=["pgd", "fgsm", "apgd"])
def test_robust_accuracy_is_exactly_the_share_farther_than_eps_from_the_threshold(make) -> None:
    """With ε = 0.1 exactly two pixels (0.45, 0.56) can cross 0.5: robust 4/6 < clean 6/6.

    An 'attack' that returns its input, or an evaluation that scores clean inputs as robust,
    reports 6/6 and fails here.
    """
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(PIXELS, LABELS), batch_size=3)
    attack = make(0.1)
    report = evaluate(threshold_model(), loader, [attack], progress=False)
    assert report.clean_accuracy == 1.0
    assert report.robust_accuracy[attack.name] == pytest.approx(4 / 6)


def test_an_identity_attack_is_told_apart_from_a_real_one() -> None:
    loader = DataLoader(TensorDataset(PIXELS, LABELS), batch_size=6)
    identity = Attack("identity", 0.1, lambda model: (lambda x, y: x.clone()))
    report = evaluate(threshold_model(), loader, [identity, pgd(0.1, steps=10)], progress=False)
    assert report.robust_accuracy["identity"] == report.clean_accuracy == 1.0
    assert report.robust_accuracy["PGD-10"] < report.clean_accuracy


# ---------------------------------------------------------------- model selection

SCRIPT = ("constant", "right", "wrong", "constant")
"""Validation accuracy per epoch: 0.5, 1.0, 0.0, 0.5 — the best epoch is 1, the worst 2, the last 3."""


class ScriptedLoss:
    """Sets the model to the epoch's scripted weights and returns a zero-gradient loss.

    It also records every ``set_progress`` call, which is how ``fit`` drives ε ramps.
    """

    name = "scripted"

    def __init__(self) -> None:
        self.epoch = 0
        self.progress: list[tuple[int, int, int]] = []

    def set_progress(self, epoch: int, batch: int, batches_per_epoch: int) -> None:
        self.epoch = epoch
        self.progress.append((epoch, batch, batches_per_epoch))

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
        layer = model[1]
        weight, bias = {"right": ([[-1.0], [1.0]], [0.5, -0.5]), "wrong": ([[1.0], [-1.0]], [-0.5, 0.5]),
                        "constant": ([[0.0], [0.0]], [1.0, 0.0])}[SCRIPT[self.epoch]]
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(weight))
            layer.bias.copy_(torch.tensor(bias))
        return 0.0 * model(inputs).sum()


def test_fit_restores_the_best_validation_epoch_and_drives_progress() -> None:
    pixels = torch.tensor([0.1, 0.2, 0.8, 0.9]).view(4, 1, 1, 1)
    data = TensorDataset(pixels, (pixels.flatten() > 0.5).long())
    train = DataLoader(data, batch_size=2)
    loss = ScriptedLoss()
    config = TrainConfig(epochs=4, lr=0.1, momentum=0.0, weight_decay=0.0)
    model = threshold_model()
    result = fit(model, loss, train, DataLoader(data, batch_size=4), config, progress=False)
    assert [r.val_clean_accuracy for r in result.history] == [0.5, 1.0, 0.0, 0.5]
    assert result.best_epoch == 1
    assert torch.equal(model[1].weight, torch.tensor([[-1.0], [1.0]]))
    assert loss.progress == [(e, b, 2) for e in range(4) for b in range(2)]
