"""StabilityImportance through tp.MetaPruner, the geometric scheduler and weight rewinding."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from certify_nets import residual_net, sequential_net
from harp_plugin.bounds import compute_bounds
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.certify.rewind import WeightRewinder
from harp_plugin.schedulers.geometric import GeometricScheduler, rounds_needed

CALIBRATION = torch.rand(16, 2, 8, 8, generator=torch.Generator().manual_seed(0))


def conv1_group(model: nn.Module) -> tp.Group:
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=CALIBRATION[:1])
    conv = model[0][1]
    return graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))


@pytest.mark.parametrize("mode", ["nrs", "rs", "count", "relax"])
def test_scores_follow_the_bounds(mode: str) -> None:
    model = sequential_net(0)
    scores = StabilityImportance(model, CALIBRATION, eps=0.02, mode=mode, magnitude_weight=0.0, dead_penalty=None)(conv1_group(model))
    low, high = compute_bounds(model, CALIBRATION, 0.02, method="ibp").preactivations["0.3"]
    gamma = model[0][2].weight.detach().view(1, -1, 1, 1)
    per_neuron = {  # the definitions, written out here rather than taken from the scoring code
        "nrs": torch.tanh(1 + low * high / gamma**2),
        "rs": torch.tanh(1 + low * high),
        "count": 1.0 - ((low < -1e-5) & (high > 1e-5)).float(),
        "relax": -(torch.relu(-low) * torch.relu(high)),
    }[mode]
    assert scores.shape == (4,)
    torch.testing.assert_close(scores, per_neuron.mean(dim=(0, 2, 3)), atol=1e-6, rtol=1e-5)


def test_dead_channel_goes_first_and_ties_break_by_magnitude() -> None:
    model = sequential_net(0)
    model[0][2].bias.data[1] = -1e3  # channel 1 is off on the whole ball: l·u > 0 looks "stable"
    group = conv1_group(model)
    naive = StabilityImportance(model, CALIBRATION, eps=0.02, dead_penalty=None, magnitude_weight=0.0)(group)
    assert naive[1] == naive.max()
    scores = StabilityImportance(model, CALIBRATION, eps=0.02)(group)
    assert scores.argmin() == 1
    saturated = StabilityImportance(model, CALIBRATION, eps=0.9, dead_penalty=None)(group)
    assert len(set(saturated.tolist())) == 4, "tanh saturates at eps=0.9; the magnitude term must break the tie"


def test_no_relu_is_an_error() -> None:
    with pytest.raises(ValueError, match="no ReLU"):
        StabilityImportance(nn.Sequential(nn.Flatten(), nn.Linear(128, 3)), CALIBRATION, eps=0.1)
    with pytest.raises(ValueError, match="mode 'entropy'"):
        StabilityImportance(sequential_net(0), CALIBRATION, eps=0.1, mode="entropy")


def test_geometric_scheduler() -> None:
    ratios = GeometricScheduler()(0.5, 6)
    assert ratios[0] == 0 and ratios[-1] == 0.5
    assert ratios[1] == pytest.approx(0.11) and ratios[2] == pytest.approx(1 - 0.89**2)
    assert rounds_needed(0.5) == 6 and rounds_needed(1 - 0.89**12) == 12
    exact = GeometricScheduler(rate=None)(0.75, 2)
    assert exact == pytest.approx([0.0, 0.5, 0.75])


@pytest.mark.parametrize("build", [sequential_net, residual_net])
def test_metapruner_rounds_with_rewinding(build) -> None:
    model = build(1)
    rewinder = WeightRewinder(model)
    initial = model[1].weight.detach().clone() if build is residual_net else model[0][1].weight.detach().clone()
    with torch.no_grad():  # "training" moves every weight away from its initial value
        for p in model.parameters():
            p.add_(0.01)
    importance = StabilityImportance(model, CALIBRATION, eps=0.02)
    pruner = tp.MetaPruner(
        model, CALIBRATION[:1], importance=importance, pruning_ratio=0.5, iterative_steps=3,
        iterative_pruning_ratio_scheduler=GeometricScheduler(), ignored_layers=[model[-1]],
    )
    for _ in range(3):
        rewinder.step(pruner)
        rewinder.rewind()
        result = certified_accuracy(model, [(CALIBRATION, model(CALIBRATION).argmax(1))], 0.001, backend="native", progress=False)
        assert result.total == 16 and result.clean_accuracy == 1.0
    conv = model[1] if build is residual_net else model[0][1]
    assert conv.out_channels < initial.shape[0]
    torch.testing.assert_close(conv.weight.detach(), initial[rewinder.kept[conv]["out"]][:, rewinder.kept[conv]["in"]])
