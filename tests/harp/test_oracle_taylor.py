"""Adversarial Taylor scores = Torch-Pruning's own Taylor criterion fed with gradients of the
adversarial loss, summed over the first ``batches`` batches, with the model in eval mode.

The reference gradients are computed here by hand (CE on a known x_adv); the reference
scores come from ``tp.importance.GroupTaylorImportance`` itself, so a score built from clean
gradients, from the wrong number of batches or in train mode differs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import NotFittedError
from harp_plugin.importance.taylor import AdversarialTaylorImportance, HessianImportance, accumulate_hessian
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import PGDATLoss, StandardLoss


def shifted(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for an attack: every pixel 0.2 brighter (clipped)."""
    return (x + 0.2).clamp(0, 1)


@pytest.mark.parametrize("kwargs, batches", [({"batches": 2}, 2), ({}, 4)], ids=["two", "default-four"])
def test_scores_come_from_the_adversarial_gradients_of_the_first_batches(
    sequential: nn.Sequential, kwargs: dict, batches: int
) -> None:
    model = sequential
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 1, 12, 12, generator=generator), torch.randint(0, 4, (12,), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    loss = PGDATLoss(0.2)
    loss.attack = Attack("shift", 0.2, lambda model: shifted)
    bn_before = model[1].running_mean.clone()

    importance = AdversarialTaylorImportance(**kwargs)
    model.train()
    importance.fit(model, loader, loss=loss)
    assert model.training and torch.equal(model[1].running_mean, bn_before), "scored in eval mode, mode restored"
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    group = graph.get_pruning_group(model[3], tp.prune_conv_out_channels, idxs=list(range(16)))
    ours = importance(group)

    model.zero_grad(set_to_none=True)
    model.eval()
    for i in range(batches):
        inputs, labels = x[2 * i:2 * i + 2], y[2 * i:2 * i + 2]
        F.cross_entropy(model(shifted(inputs, labels)), labels).backward()
    reference = tp.importance.GroupTaylorImportance()(group)
    torch.testing.assert_close(ours, reference)

    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x[:2 * batches]), y[:2 * batches]).mul(batches).backward()  # clean gradients
    assert not torch.allclose(tp.importance.GroupTaylorImportance()(group), reference, rtol=0.05)


def test_bad_batches_and_a_layer_left_without_gradient_are_errors(sequential: nn.Sequential) -> None:
    """A layer whose gradient fit did not produce (frozen after an earlier backward) must not
    score with a stale or zeroed gradient: fit frees the old gradients first."""
    with pytest.raises(ValueError, match="batches must be >= 1, got 0"):
        AdversarialTaylorImportance(batches=0)
    x, y = torch.rand(4, 1, 12, 12), torch.randint(0, 4, (4,))
    F.cross_entropy(sequential(x), y).backward()  # every layer now holds a gradient
    sequential[3].weight.requires_grad_(False)
    importance = AdversarialTaylorImportance(batches=1)
    importance.fit(sequential, DataLoader(TensorDataset(x, y), batch_size=4), loss=StandardLoss())
    assert sequential[3].weight.grad is None
    graph = tp.DependencyGraph().build_dependency(sequential, example_inputs=x[:1])
    group = graph.get_pruning_group(sequential[3], tp.prune_conv_out_channels, idxs=list(range(16)))
    with pytest.raises(NotFittedError, match=r"layer 3 \(Conv2d.*\) has no gradient: call imp\.fit\(model, "
                                             r"train_loader, loss=\.\.\.\) on this model before pruner\.step\(\) "
                                             r"\(and do not clear the gradients\)"):
        importance(group)


def test_hessian_averages_the_squared_per_sample_gradients_of_the_first_samples() -> None:
    """samples = 5 over batches of 3 (the count crosses a batch), two input channels, BN in
    train mode, the first layer frozen: the sums must equal a per-sample loop done here."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3))
    model[0].weight.requires_grad_(False)
    x, y = torch.rand(7, 2, 4, 4), torch.randint(0, 3, (7,))
    running = model[1].running_mean.clone()
    importance = HessianImportance()
    model.train()
    accumulate_hessian(model, DataLoader(TensorDataset(x, y), batch_size=3), StandardLoss(), importance, 5)
    assert model.training and torch.equal(model[1].running_mean, running), "scored in eval mode"

    model.eval()
    trained = [p for p in model.parameters() if p.requires_grad]
    squares: list[list[torch.Tensor]] = []
    for i in range(5):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), trained)
        squares.append([g.pow(2) for g in grads])
    for k, param in enumerate(trained):
        assert importance._counter[param] == 5
        expected = torch.stack([sample[k] for sample in squares]).mean(0)
        torch.testing.assert_close(importance._accu_grad[param] / importance._counter[param], expected)
    assert model[0].weight not in importance._accu_grad
