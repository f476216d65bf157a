"""HARP / HYDRA against values worked out by hand.

* L_c = max(Σ n_l·a_l / (a_t·Σ n_l) − 1, 0): exactly 0 under the budget (the hinge), the
  relative overshoot above it, a gradient ∝ n_l; FLOP costs multiply by the input group's kept
  fraction.
* The mask phase trains scores (and rates) but never θ.
* A coupled group gets the kept fraction of the member that keeps the most.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import reconciled_ratio_dict, train_masks
from harp_plugin.masking import CostModel, LayerCost, attach_masks
from harp_plugin.robust.losses import StandardLoss
from harp_plugin.robust.training import TrainConfig

PARAMETERS = CostModel({"a": LayerCost(100.0), "b": LayerCost(300.0)}, "parameters")


@pytest.mark.parametrize("kept, expected", [
    ({"a": 0.1, "b": 0.1}, 0.0),            # exactly on budget: 40 of 40
    ({"a": 0.05, "b": 0.05}, 0.0),          # under budget: the hinge, not −0.5
    ({"a": 0.3, "b": 0.05}, 0.125),         # 30 + 15 = 45 → 45/40 − 1
    ({"a": 0.02, "b": 0.2}, 0.55),          # 2 + 60 = 62 → 62/40 − 1
])
def test_compression_loss_is_the_hinged_relative_overshoot(kept: dict, expected: float) -> None:
    value = PARAMETERS.compression_loss({k: torch.tensor(v) for k, v in kept.items()}, 0.1)
    assert value.item() == pytest.approx(expected, abs=1e-7)


def test_compression_gradient_is_proportional_to_layer_size_above_budget_and_zero_below() -> None:
    kept = {"a": torch.tensor(0.3, requires_grad=True), "b": torch.tensor(0.05, requires_grad=True)}
    PARAMETERS.compression_loss(kept, 0.1).backward()
    assert kept["a"].grad.item() == pytest.approx(100 / 40) and kept["b"].grad.item() == pytest.approx(300 / 40)
    under = {"a": torch.tensor(0.05, requires_grad=True), "b": torch.tensor(0.05, requires_grad=True)}
    PARAMETERS.compression_loss(under, 0.1).backward()
    assert under["a"].grad.item() == 0.0 and under["b"].grad.item() == 0.0


def test_flop_cost_multiplies_output_and_input_shares() -> None:
    """Channel mode: each mask is a Torch-Pruning group; a concatenated input weighs its parts by width."""
    flops = CostModel({"a": LayerCost(100.0, outputs=(("a", 1.0),)),
                       "b": LayerCost(200.0, outputs=(("b", 1.0),), inputs=(("a", 1.0),)),
                       "c": LayerCost(50.0, outputs=(("c", 1.0),), inputs=(("a", 0.25), ("b", 0.75)))}, "FLOPs")
    kept = {"a": 0.5, "b": 0.25, "c": 0.4}
    # a: 100·0.5 = 50; b: 200·0.25·0.5 = 25; c: 50·0.4·(0.25·0.5 + 0.75·0.25) = 6.25
    assert flops.cost(kept).item() == pytest.approx(81.25)
    assert flops.cost_value(kept) == pytest.approx(81.25)
    assert flops.cost({}).item() == pytest.approx(350.0)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))


@pytest.mark.parametrize("kept_init, expected", [(0.2, 3.0), (0.05, 0.0), (0.04, 0.0)])
def test_masked_model_compression_loss_at_a_uniform_start(kept_init: float, expected: float) -> None:
    """Every layer starts at a = kept_init, so L_c = max(kept_init / a_t − 1, 0) whatever n_l are."""
    masks = attach_masks(mlp(), 0.05, kept_init=kept_init, alpha=0.1)
    assert masks.compression_loss().item() == pytest.approx(expected, abs=1e-6)
    assert {n: lc.dense for n, lc in masks.costs.layers.items()} == {"0": 60.0, "2": 200.0, "4": 60.0}
    assert masks.costs.unit == "parameters"


def test_a_full_kept_init_gives_a_finite_rate() -> None:
    masks = attach_masks(mlp(), 0.05, kept_init=1.0)
    kept = masks.kept_fractions()
    assert all(0.99 < float(a) <= 1.0 for a in kept.values())
    assert torch.isfinite(masks.compression_loss())


def test_channel_mode_counts_flops() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    masks = attach_masks(model, 0.5, mode="channel", example_inputs=torch.rand(1, 1, 6, 6))
    assert masks.costs.unit == "FLOPs"


def loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 6, generator=generator), torch.randint(0, 3, (24,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)


@pytest.mark.parametrize("method", ["harp", "hydra"])
def test_the_mask_phase_trains_scores_but_leaves_theta_untouched(method: str) -> None:
    model = mlp()
    theta = {name: p.detach().clone() for name, p in model.named_parameters()}
    masks = attach_masks(model, 0.3, method=method, kept_init=0.5)
    scores = {name: m.scores.detach().clone() for name, m in masks.masks().items()}
    train, val = loaders()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 2-epoch HARP run may not reach its target
        train_masks(model, masks, StandardLoss(), train, val, TrainConfig(epochs=2, lr=0.5), strict=False)
    for name, mask in masks.masks().items():
        assert not torch.equal(mask.scores, scores[name]), f"scores of layer {name} did not train"
    for name, layer in masks.layers.items():
        torch.testing.assert_close(layer.parametrizations.weight.original, theta[f"{name}.weight"], atol=0, rtol=0)
        torch.testing.assert_close(layer.bias, theta[f"{name}.bias"], atol=0, rtol=0)


class TwoStreams(nn.Module):
    """stem and branch are summed (one coupled group of 8 channels); head is on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        stream = stem + self.branch(torch.relu(stem))
        return self.fc(torch.relu(self.head(torch.relu(stream))).mean((2, 3)))


@pytest.mark.parametrize("stem_kept, branch_kept", [(2, 6), (6, 2), (5, 5)])
def test_a_coupled_group_keeps_what_its_widest_member_learned(stem_kept: int, branch_kept: int) -> None:
    torch.manual_seed(0)
    model, example = TwoStreams(), torch.rand(1, 1, 6, 6)
    kept = {model.stem: stem_kept, model.branch: branch_kept, model.head: 3}
    ratios = reconciled_ratio_dict(model, example, kept, ignored_layers=[model.fc])
    tp.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                  pruning_ratio_dict=ratios, ignored_layers=[model.fc]).step()
    widest = max(stem_kept, branch_kept)
    assert (model.stem.out_channels, model.branch.out_channels, model.head.out_channels) == (widest, widest, 3)
