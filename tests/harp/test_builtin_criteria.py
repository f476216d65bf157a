"""Every data-free or gradient-based built-in criterion removes channels through remove_channels."""
import pytest
import torch
import torch_pruning as tp
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance.channels import remove_channels
from harp_plugin.registry import get_registry


@pytest.mark.parametrize("name", ["magnitude", "l1", "bn-scale", "lamp", "fpgm", "taylor", "hessian", "random",
                                  "smoothness"])
def test_criterion_halves_every_hidden_layer(sequential, name: str) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(16, 1, 12, 12), torch.randint(0, 4, (16,)))
    importance = get_registry().create("importances", name)
    remove_channels(sequential, importance, 0.5, torch.rand(2, 1, 12, 12), train_loader=DataLoader(data, 8),
                    gradient_batches=1)
    # BN-scale scores only groups that hold a BatchNorm: the hidden Linear layer keeps its 32.
    hidden = 32 if name == "bn-scale" else 16
    assert (sequential[0].out_channels, sequential[3].out_channels, sequential[7].out_features) == (4, 8, hidden)
    assert sequential(torch.rand(3, 1, 12, 12)).shape == (3, 4)


def test_hessian_without_data_is_a_clear_error(sequential) -> None:
    with pytest.raises(ValueError, match="GroupHessianImportance needs train_loader"):
        remove_channels(sequential, tp.importance.GroupHessianImportance(), 0.5, torch.rand(2, 1, 12, 12))


def test_hessian_averages_squared_per_sample_gradients() -> None:
    from harp_plugin.importance.taylor import HessianImportance

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    importance = HessianImportance()
    inputs = torch.randn(3, 3)
    squares = []
    for x in inputs:
        layer.zero_grad()
        layer(x).pow(2).sum().backward()
        squares.append(layer.weight.grad.clone().pow(2))
        importance.accumulate_grad(layer)
    assert torch.allclose(importance._accu_grad[layer.weight] / importance._counter[layer.weight],
                          torch.stack(squares).mean(0))
