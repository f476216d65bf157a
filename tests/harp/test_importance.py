"""HarpImportance inside tp.MetaPruner: the user's one-liner, learned ratios, bad input."""
import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import HarpImportance, NotFittedError, TargetNotReachedError
from harp_plugin.masking import conv_linear_flops
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma


def _loaders(shape: tuple[int, ...], classes: int) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(32, *shape, generator=generator)
    y = torch.randint(0, classes, (32,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(x[:16], y[:16]), batch_size=16)


def _fit(model: nn.Module, shape: tuple[int, ...], classes: int, method: str = "harp", kept_init: float = 0.6):
    train, val = _loaders(shape, classes)
    imp = HarpImportance(0.5, method, kept_init=kept_init, gamma=IncrementalGamma(2.0, period=0.5))
    imp.fit(model, train, loss=PGDATLoss(eps=0.05, steps=2), val_loader=val, config=TrainConfig(epochs=2, lr=0.5))
    return imp


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_one_liner_on_a_sequential_model(sequential: nn.Sequential) -> None:
    imp = _fit(sequential, (1, 12, 12), 4)
    example_inputs = torch.randn(1, 1, 12, 12)
    before = _params(sequential)
    pruner = tp.MetaPruner(sequential, example_inputs, importance=imp, pruning_ratio=0.5,
                           ignored_layers=[sequential[9]])
    pruner.step()
    assert sequential[0].out_channels == 4 and sequential[3].out_channels == 8
    assert sequential[7].out_features == 16 and sequential[9].out_features == 4
    assert _params(sequential) < before / 2
    assert sequential(example_inputs).shape == (1, 4)


def test_one_liner_on_a_residual_model_with_learned_ratios(residual: nn.Sequential) -> None:
    imp = _fit(residual, (3, 16, 16), 4, kept_init=0.5)
    example_inputs = torch.randn(1, 3, 16, 16)
    ratios = imp.pruning_ratio_dict(residual, example_inputs)
    before = _params(residual)
    coupled = [residual[4].residual[3], residual[5].residual[3], residual[1]]  # one residual stream
    assert len({ratios[m] for m in coupled}) == 1
    pruner = tp.MetaPruner(residual, example_inputs, importance=imp, pruning_ratio_dict=ratios,
                           ignored_layers=imp.ignored_layers)
    pruner.step()
    assert _params(residual) < before
    stream = max(imp._kept[m] for m in coupled)  # reconciled: the widest member wins
    assert [m.out_channels for m in coupled] == [stream] * 3
    inner = residual[4].residual[0]
    assert inner.out_channels == imp._kept[inner] < 8
    assert residual(example_inputs).shape == (1, 4)


def test_kept_channels_are_the_learned_ones(sequential: nn.Sequential) -> None:
    imp = _fit(sequential, (1, 12, 12), 4, method="hydra")
    learned = imp._scores[sequential[0]].clone()
    weights = sequential[0].weight.detach().clone()
    imp.make_pruner(sequential, torch.randn(1, 1, 12, 12)).step()
    keep = learned.topk(4).indices.sort().values  # HYDRA: the uniform half of 8 channels
    torch.testing.assert_close(sequential[0].weight, weights[keep])


def test_lwm_needs_no_training(sequential: nn.Sequential) -> None:
    imp = HarpImportance(0.25, "lwm")
    imp.fit(sequential, example_inputs=torch.randn(1, 1, 12, 12))
    imp.make_pruner(sequential, torch.randn(1, 1, 12, 12)).step()
    assert sequential[0].out_channels == 2 and sequential[7].out_features == 8


def test_unfitted_importance_is_an_error(sequential: nn.Sequential) -> None:
    pruner = tp.MetaPruner(sequential, torch.randn(1, 1, 12, 12), importance=HarpImportance(0.5),
                           ignored_layers=[sequential[9]])
    with pytest.raises(NotFittedError, match="not fitted"):
        pruner.step()


def test_importance_fitted_to_another_model_is_an_error(sequential: nn.Sequential) -> None:
    from tests.harp.conftest import tiny_cnn
    imp = HarpImportance(0.5, "lwm")
    imp.fit(tiny_cnn(), example_inputs=torch.randn(1, 1, 12, 12))
    pruner = tp.MetaPruner(sequential, torch.randn(1, 1, 12, 12), importance=imp, ignored_layers=[sequential[9]])
    with pytest.raises(NotFittedError, match="fitted to another model"):
        pruner.step()
    with pytest.raises(NotFittedError, match="fitted to another model"):
        imp.pruning_ratio_dict(sequential, torch.randn(1, 1, 12, 12))


def test_mismatched_example_inputs_are_an_error(sequential: nn.Sequential) -> None:
    imp = HarpImportance(0.5, "lwm")
    imp.fit(sequential, example_inputs=torch.randn(1, 1, 12, 12))
    with pytest.raises(ValueError, match=r"per-sample shape \(3, 32, 32\)"):
        imp.make_pruner(sequential, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("gamma0", [0.0, 50.0])
def test_harp_lands_on_the_uniform_budget_whatever_gamma(residual: nn.Sequential, gamma0: float) -> None:
    """γ = 0 never pushes the rates down, a huge γ drives them to the floor: both must arrive."""
    import copy
    uniform = copy.deepcopy(residual)
    example_inputs = torch.randn(1, 3, 16, 16)
    train, val = _loaders((3, 16, 16), 4)
    imp = HarpImportance(0.5, "harp", kept_init=0.9, gamma=IncrementalGamma(gamma0, period=0.5))
    imp.fit(residual, train, loss=PGDATLoss(eps=0.05, steps=1), val_loader=val, config=TrainConfig(epochs=2, lr=0.5))
    imp.make_pruner(residual, example_inputs).step()
    baseline = tp.MetaPruner(uniform, example_inputs, importance=tp.importance.GroupMagnitudeImportance(),
                             pruning_ratio=0.5, ignored_layers=[uniform[-1]])
    baseline.step()
    # Torch-Pruning's own FLOP counter on both pruned networks: an independent measure of arrival
    achieved, budget = conv_linear_flops(residual, example_inputs), conv_linear_flops(uniform, example_inputs)
    assert budget * 0.995 <= achieved <= budget * (1 + 1e-9)
    assert -0.005 <= imp.projection.arrival_error <= 0.0


def test_flops_target_below_what_ignored_layers_cost_names_them(sequential: nn.Sequential) -> None:
    train, val = _loaders((1, 12, 12), 4)
    imp = HarpImportance(0.5, "harp", flops_target=0.001)
    with pytest.raises(TargetNotReachedError, match=r"0\.10% of the dense FLOPs.*'9'"):
        imp.fit(sequential, train, loss=PGDATLoss(eps=0.05, steps=1), val_loader=val,
                config=TrainConfig(epochs=1, lr=0.01), ignored_layers=[sequential[7]])


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5])
def test_targets_of_zero_one_or_above_are_refused_up_front(value: float) -> None:
    with pytest.raises(ValueError, match=f"target_kept must be a kept fraction strictly between 0 and 1.*{value}"):
        HarpImportance(value)
    with pytest.raises(ValueError, match="flops_target"):
        HarpImportance(0.5, flops_target=value)
