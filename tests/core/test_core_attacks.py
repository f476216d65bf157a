"""Attacks over torchattacks with the traps of methods.md §7 handled."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from harp_plugin.robust.attacks import apgd, autoattack, fgsm, pgd, trades_pgd, unwrap_parallel


@pytest.mark.parametrize("make", [fgsm, pgd, trades_pgd, apgd])
def test_adversarial_inputs_stay_in_the_ball_and_pixel_range(make, tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    eps = 0.1
    attack = make(eps)
    adversarial = attack(tiny_model.eval(), images[:8], labels[:8])
    assert adversarial.shape == images[:8].shape
    assert (adversarial - images[:8]).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not adversarial.requires_grad


def test_pgd_lowers_accuracy_of_a_trained_model(tiny_model, tiny_loaders, tiny_data) -> None:
    from harp_plugin.robust import StandardLoss, TrainConfig, fit

    train, val = tiny_loaders
    fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=8, lr=0.1), progress=False)
    images, labels = tiny_data
    tiny_model.eval()
    clean = (tiny_model(images).argmax(1) == labels).float().mean()
    adversarial = pgd(0.5, steps=10)(tiny_model, images, labels)
    attacked = (tiny_model(adversarial).argmax(1) == labels).float().mean()
    assert clean > 0.9
    assert attacked < clean - 0.3


@pytest.mark.parametrize("training", [True, False])
def test_model_mode_is_restored(training: bool, tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    tiny_model.train(training)
    pgd(0.1, steps=2)(tiny_model, images[:4], labels[:4])
    assert tiny_model.training is training
    assert all(m.training is training for m in tiny_model.modules())


def test_attacks_work_inside_no_grad(tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    with torch.no_grad():
        adversarial = pgd(0.1, steps=3)(tiny_model.eval(), images[:4], labels[:4])
    assert not torch.equal(adversarial, images[:4])


def test_apgd_does_not_reseed_the_global_rng(tiny_model, tiny_data) -> None:
    images, labels = tiny_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    apgd(0.1, steps=3)(tiny_model.eval(), images[:4], labels[:4])
    assert torch.equal(torch.rand(3), expected)


def test_data_parallel_wrapper_is_unwrapped(tiny_model) -> None:
    assert unwrap_parallel(nn.DataParallel(tiny_model)) is tiny_model
    assert unwrap_parallel(tiny_model) is tiny_model


@pytest.mark.parametrize("bad", [-0.01, 1.5])
def test_eps_outside_unit_interval_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match=f"eps must be in \\[0, 1\\].*got {bad}"):
        pgd(bad)


def test_bad_steps_and_alpha_are_rejected() -> None:
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        pgd(0.1, steps=0)
    with pytest.raises(ValueError, match="alpha .* must be positive, got -1"):
        pgd(0.1, alpha=-1)
    with pytest.raises(ValueError, match="apgd loss must be 'ce' or 'dlr'"):
        apgd(0.1, loss="kl")


@pytest.mark.skipif(importlib.util.find_spec("pyautoattack") is not None, reason="pyautoattack is installed")
def test_reference_autoattack_names_its_package_when_missing() -> None:
    with pytest.raises(ImportError, match="pip install pyautoattack"):
        autoattack(0.1)


@pytest.mark.skipif(importlib.util.find_spec("pyautoattack") is None, reason="pyautoattack is not installed")
def test_reference_autoattack_runs_through_the_same_wrapper() -> None:
    torch.manual_seed(0)
    # ten classes (its targeted APGD needs them) and a linear model, whose gradients never vanish
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    images = torch.rand(6, 1, 8, 8)
    labels = model(images).argmax(1)  # all correct, and a wide ball: APGD-CE flips them early
    adversarial = autoattack(0.5)(model, images, labels)
    assert (adversarial - images).abs().max() <= 0.5 + 1e-6
    assert (model(adversarial).argmax(1) != labels).all()
    assert not model.training
