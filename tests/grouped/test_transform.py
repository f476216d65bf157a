"""The grouped-kernel transform: same function as the masked conv, smaller, trainable, saved,
certified and still prunable by Torch-Pruning."""
import copy
import io

import pytest
import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.bounds import compute_bounds
from harp_plugin.grouped import (
    GroupedKernelConv2d,
    grouped_kernel_prune,
    grouped_kernel_pruners,
    restore_grouped_kernels,
)
from harp_plugin.models.small_cnn import small_cnn

torch.set_num_threads(1)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 5),
    ).eval()


def _masked(original: nn.Sequential, plans: dict) -> nn.Sequential:
    """The original model with the pruned kernels zeroed: the reference function."""
    masked = copy.deepcopy(original)
    with torch.no_grad():
        for name, plan in plans.items():
            conv = masked.get_submodule(name)
            conv.weight.mul_(plan.kernel_mask(conv.out_channels, conv.in_channels)[:, :, None, None])
    return masked


def test_transformed_model_equals_the_masked_original_and_shrinks_by_the_ratio() -> None:
    original = _net()
    model = copy.deepcopy(original)
    plans = grouped_kernel_prune(model, 0.5, groups=4)
    assert sorted(plans) == ["0", "3", "6"]
    for name, plan in plans.items():
        layer = model.get_submodule(name)
        assert isinstance(layer, GroupedKernelConv2d) and layer.groups == 4
        # every group keeps the same number of input channels, each filter is in exactly one group
        assert {len(k) for k in plan.kept_channels} == {round(0.5 * original.get_submodule(name).in_channels)}
        assert sorted(f for g in plan.filter_groups for f in g) == list(range(layer.out_channels))
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(model(x), _masked(original, plans)(x), atol=1e-5)
    # 3 -> 2 kept inputs (round(1.5)), 16 -> 8 and 16 -> 8: weights shrink by exactly that share
    for name, kept in (("0", 2 / 3), ("3", 0.5), ("6", 0.5)):
        dense = original.get_submodule(name).weight.numel()
        assert model.get_submodule(name).conv.weight.numel() == pytest.approx(kept * dense)
    example = torch.rand(1, 3, 8, 8)
    dense_macs, _ = tp.utils.count_ops_and_params(original.get_submodule("3"), torch.rand(1, 16, 8, 8))
    pruned_macs, _ = tp.utils.count_ops_and_params(model.get_submodule("3"), torch.rand(1, 16, 8, 8))
    assert pruned_macs == pytest.approx(0.5 * dense_macs, rel=0.01)
    assert model(example).shape == (1, 5)


def test_to_dense_is_the_same_function() -> None:
    model = _net()
    grouped_kernel_prune(model, 0.25, groups=2)
    layer = model[3]
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(layer.to_dense()(x), layer(x), atol=1e-5)


def test_fine_tuning_lowers_the_loss() -> None:
    model = _net().train()
    grouped_kernel_prune(model, 0.5, groups=4)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 5, (16,))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model[3].conv.weight.grad is not None


def test_state_dict_round_trip_with_weights_only() -> None:
    model = _net()
    grouped_kernel_prune(model, 0.5, groups=4)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = _net()
    assert restore_grouped_kernels(fresh, state) == ["0", "3", "6"]
    fresh.load_state_dict(state)
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(fresh.eval()(x), model(x))


def test_bound_engine_certifies_it_like_the_masked_original() -> None:
    original = small_cnn(width=8).eval()
    model = copy.deepcopy(original)
    plans = grouped_kernel_prune(model, 0.5, groups=4)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    for method in ("ibp", "crown-ibp"):
        ours = compute_bounds(model, x, 0.01, method=method, y=y)
        reference = compute_bounds(_masked(original, plans), x, 0.01, method=method, y=y)
        assert torch.allclose(ours.lower, reference.lower, atol=1e-4)
    # sound: sampled points of the ball (corners included) stay above the lower margin bound
    bounds = compute_bounds(model, x, 0.01, method="crown-ibp")
    for _ in range(20):
        point = (x + 0.01 * torch.sign(torch.randn_like(x))).clamp(0, 1)
        out = model(point)
        assert (out >= bounds.lower - 1e-5).all() and (out <= bounds.upper + 1e-5).all()


def test_torch_pruning_removes_channels_around_it_exactly() -> None:
    model = _net()
    grouped_kernel_prune(model, 0.5, groups=4)
    x = torch.rand(2, 3, 8, 8)
    layer = copy.deepcopy(model[3])
    inputs = torch.randn(2, 16, 8, 8)
    reference = layer(inputs)
    pruner = grouped_kernel_pruners()[GroupedKernelConv2d]
    pruner.prune_out_channels(layer, [0, 5, 6, 7])  # unbalanced across groups: padding needed
    kept = [o for o in range(16) if o not in (0, 5, 6, 7)]
    assert torch.allclose(layer(inputs), reference[:, kept], atol=1e-5)
    pruner.prune_in_channels(layer, [2, 9])
    zeroed = inputs.clone()
    zeroed[:, [2, 9]] = 0
    reference = copy.deepcopy(model[3])(zeroed)[:, kept]
    assert torch.allclose(layer(inputs[:, [c for c in range(16) if c not in (2, 9)]]), reference, atol=1e-5)
    # and inside MetaPruner, with the pruner registered: the model keeps working and shrinks
    before = sum(p.numel() for p in model.parameters())
    meta = tp.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(), pruning_ratio=0.25,
                         ignored_layers=[model[9]], customized_pruners=grouped_kernel_pruners(),
                         root_module_types=[nn.Conv2d, nn.Linear, GroupedKernelConv2d])
    meta.step()
    assert model(x).shape == (2, 5)
    assert sum(p.numel() for p in model.parameters()) < before
    assert model[4].num_features == model[3].out_channels < 16


def test_unregistered_pruning_of_the_producer_is_a_clear_error() -> None:
    model = _net()
    grouped_kernel_prune(model, 0.5, groups=4, ignored_layers=[model[0]])
    tp.prune_conv_out_channels(model[0], [0, 1])
    tp.prune_batchnorm_out_channels(model[1], [0, 1])
    with pytest.raises(ValueError, match="expects 16 input channels, got 14.*customized_pruners"):
        model(torch.rand(1, 3, 8, 8))


def test_bad_inputs_are_clear_errors() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="has no Conv2d with a k×k kernel"):
        grouped_kernel_prune(mlp, 0.5)
    pointwise = nn.Sequential(nn.Conv2d(4, 8, 1))
    with pytest.raises(ValueError, match="has no Conv2d"):
        grouped_kernel_prune(pointwise, 0.5)
    with pytest.raises(ValueError, match=r"layer '0' has 16 filters, which 3 groups do not divide"):
        grouped_kernel_prune(_net(), 0.5, groups=3, ignored_layers=[])
    with pytest.raises(ValueError, match="kept_fraction must be in"):
        grouped_kernel_prune(_net(), 0.0)
