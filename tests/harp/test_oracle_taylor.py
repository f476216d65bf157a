"""Adversarial Taylor scores = Torch-Pruning's own Taylor criterion fed with gradients of the
adversarial loss, summed over the first ``batches`` batches, with the model in eval mode.

The reference gradients are computed here by hand (CE on a known x_adv); the reference
scores come from ``tp.importance.GroupTaylorImportance`` itself, so a score built from clean
gradients, from the wrong number of batches or in train mode differs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance.taylor import AdversarialTaylorImportance
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import PGDATLoss


def shifted(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for an attack: every pixel 0.2 brighter (clipped)."""
    return (x + 0.2).clamp(0, 1)


def test_scores_come_from_the_adversarial_gradients_of_the_first_batches(sequential: nn.Sequential) -> None:
    model = sequential
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 1, 12, 12, generator=generator), torch.randint(0, 4, (12,), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    loss = PGDATLoss(0.2)
    loss.attack = Attack("shift", 0.2, lambda model: shifted)
    bn_before = model[1].running_mean.clone()

    importance = AdversarialTaylorImportance(batches=2)
    model.train()
    importance.fit(model, loader, loss=loss)
    assert model.training and torch.equal(model[1].running_mean, bn_before), "scored in eval mode, mode restored"
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    group = graph.get_pruning_group(model[3], tp.prune_conv_out_channels, idxs=list(range(16)))
    ours = importance(group)

    model.zero_grad(set_to_none=True)
    model.eval()
    for i in range(2):
        inputs, labels = x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]
        F.cross_entropy(model(shifted(inputs, labels)), labels).backward()
    reference = tp.importance.GroupTaylorImportance()(group)
    torch.testing.assert_close(ours, reference)

    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x[:8]), y[:8]).mul(2).backward()  # clean gradients of the same batches
    assert not torch.allclose(tp.importance.GroupTaylorImportance()(group), reference, rtol=0.05)
