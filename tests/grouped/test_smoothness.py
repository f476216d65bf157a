"""Kernel smoothness against hand-computed values, and the importance inside tp.MetaPruner."""
import pytest
import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.importance.smoothness import KernelSmoothnessImportance, filter_smoothness, kernel_smoothness
from harp_plugin.registry import get_registry

torch.set_num_threads(1)


def _kernel(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, *torch.tensor(values).shape)


def test_hand_computed_smoothness_of_single_kernels() -> None:
    # A lone tap in a corner has 3 neighbours: 3 ordered pairs from it, 3 back to it -> 6.
    assert kernel_smoothness(_kernel([[1, 0, 0], [0, 0, 0], [0, 0, 0]])).item() == pytest.approx(6.0)
    # A lone tap in the centre has 8 neighbours -> 16.
    assert kernel_smoothness(_kernel([[0, 0, 0], [0, 1, 0], [0, 0, 0]])).item() == pytest.approx(16.0)
    # An edge tap (top middle) has 5 neighbours -> 10; its value is squared: (-2)^2 = 4 -> 40.
    assert kernel_smoothness(_kernel([[0, -2, 0], [0, 0, 0], [0, 0, 0]])).item() == pytest.approx(40.0)
    # A constant kernel is perfectly smooth, whatever the sign of its taps.
    assert kernel_smoothness(_kernel([[1, -1, 1], [-1, 1, -1], [1, -1, 1]])).item() == 0.0


def test_two_by_two_kernel_every_pair_by_hand() -> None:
    # Squares 1, 4 / 9, 16; in a 2x2 kernel every tap neighbours every other one.
    squares = [1.0, 4.0, 9.0, 16.0]
    expected = sum(abs(a - b) for a in squares for b in squares)
    assert kernel_smoothness(_kernel([[1, 2], [3, 4]])).item() == pytest.approx(expected)


def test_filter_smoothness_sums_kernels_and_rejects_linear_weights() -> None:
    weight = torch.zeros(2, 3, 3, 3)
    weight[0, 0, 1, 1] = 1.0  # 16
    weight[0, 2, 0, 0] = 1.0  # 6
    weight[1, 1, 0, 1] = 1.0  # 10
    assert filter_smoothness(weight).tolist() == pytest.approx([22.0, 10.0])
    with pytest.raises(ValueError, match=r"conv weight .* got shape \(4, 5\)"):
        kernel_smoothness(torch.zeros(4, 5))


def _conv_with_known_roughness() -> nn.Sequential:
    """Six filters: 0, 2, 4 constant (S = 0); 1, 3, 5 a lone centre tap (S = 16·scale)."""
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        weight = torch.zeros(6, 2, 3, 3)
        for f in range(6):
            if f % 2 == 0:
                weight[f] = 0.1 * (f + 1)  # smooth, magnitude grows with f
            else:
                weight[f, :, 1, 1] = 0.05 * f  # rough
        model[0].weight.copy_(weight)
    return model


def test_meta_pruner_keeps_the_smoothest_filters() -> None:
    torch.manual_seed(0)
    model = _conv_with_known_roughness()
    kept = model[0].weight.detach()[[0, 2, 4]].clone()
    pruner = tp.MetaPruner(model, torch.randn(1, 2, 8, 8), importance=KernelSmoothnessImportance(),
                           pruning_ratio=0.5, root_module_types=[nn.Conv2d], ignored_layers=[model[4], model[2]])
    pruner.step()
    assert model[0].out_channels == 3
    assert torch.equal(model[0].weight, kept)


def test_magnitude_mix_breaks_ties_between_equally_smooth_filters() -> None:
    model = _conv_with_known_roughness()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 2, 8, 8))
    group = graph.get_pruning_group(model[0], tp.prune_conv_out_channels, idxs=list(range(6)))
    plain = KernelSmoothnessImportance()(group)
    mixed = KernelSmoothnessImportance(magnitude_weight=0.5)(group)
    # The smooth filters tie without magnitude; with it, the larger one ranks higher.
    assert plain[0] == plain[2] == plain[4] == 0
    assert mixed[4] > mixed[2] > mixed[0]
    # Rough filter 5 has the largest S (2 kernels × 16 × 0.25²) and scores lowest in both.
    assert plain.argmin() == 5 and mixed.argmin() == 5


def test_registered_under_smoothness_with_the_builtins() -> None:
    registry = get_registry()
    assert registry.get("importances", "smoothness") is KernelSmoothnessImportance
    assert {"l1", "bn-scale", "lamp", "fpgm", "hessian"} <= set(registry.names("importances"))
    with pytest.raises(ValueError, match="magnitude_weight must be >= 0"):
        KernelSmoothnessImportance(magnitude_weight=-1)
