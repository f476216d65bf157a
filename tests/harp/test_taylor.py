"""Adversarial Taylor: Torch-Pruning's Taylor criterion fed by the adversarial loss."""
import pytest
import torch
import torch_pruning as tp
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import NotFittedError
from harp_plugin.importance.taylor import AdversarialTaylorImportance
from harp_plugin.robust.losses import PGDATLoss


def test_scores_come_from_the_adversarial_gradients(sequential) -> None:
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 4, (8,))
    imp = AdversarialTaylorImportance(batches=1)
    imp.fit(sequential, DataLoader(TensorDataset(x, y), batch_size=8), loss=PGDATLoss(eps=0.1, steps=2))
    graph = tp.DependencyGraph().build_dependency(sequential, example_inputs=x[:1])
    group = graph.get_pruning_group(sequential[0], tp.prune_conv_out_channels, idxs=list(range(8)))
    scores = imp(group)
    assert scores.shape == (8,) and torch.all(scores >= 0)
    grad = sequential[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_unfitted_taylor_is_an_error(sequential) -> None:
    pruner = tp.MetaPruner(sequential, torch.rand(1, 1, 12, 12), importance=AdversarialTaylorImportance(),
                           ignored_layers=[sequential[9]])
    with pytest.raises(NotFittedError, match="has no gradient: call imp.fit"):
        pruner.step()
