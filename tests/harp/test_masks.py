"""Attaching masks: init, top-k counts, rates, the once-per-step mask, wrapping, bad input."""
import math

import pytest
import torch
import torchvision
from torch import nn

from harp_plugin.masking import MaskingError, UnsupportedLayerError, attach_masks, default_kept_init
from harp_plugin.masking import parametrization
from harp_plugin.masking.topk import kept_count
from harp_plugin.robust.losses import PGDATLoss
from tests.harp.conftest import tiny_cnn


def test_kept_count_follows_the_formula() -> None:
    assert kept_count(1000, 0.01) == 10
    assert kept_count(1000, 0.005) == 5
    assert kept_count(10, 0.001) == 1
    assert kept_count(7, 1.0) == 7


def test_scaled_score_init_and_uniform_hydra_masks(sequential: nn.Sequential) -> None:
    theta = sequential[3].weight.detach().clone()
    masks = attach_masks(sequential, 0.1, method="hydra")
    scores = masks.masks()["3"].scores.detach()
    torch.testing.assert_close(scores, math.sqrt(6 / (8 * 9)) * theta / theta.abs().max())
    for name, mask in masks.masks().items():
        assert int(mask.mask.sum()) == kept_count(mask.mask.numel(), 0.1), name
    threshold = theta.abs().flatten().kthvalue(theta.numel() - kept_count(theta.numel(), 0.1) + 1).values
    kept = theta.abs() >= threshold
    assert torch.equal(masks.masks()["3"].mask.bool(), kept)


def test_channel_scores_are_normalised_l1(sequential: nn.Sequential) -> None:
    theta = sequential[3].weight.detach().clone()
    masks = attach_masks(sequential, 0.5, mode="channel", example_inputs=torch.randn(1, 1, 12, 12))
    l1 = theta.abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(masks.masks()["3"].scores.detach(), l1 / l1.max())
    assert "9" not in masks.layers  # the classifier keeps all its outputs


def test_harp_rate_starts_at_kept_init_and_is_floored(sequential: nn.Sequential) -> None:
    masks = attach_masks(sequential, 0.01, kept_init=0.1, alpha=0.1)
    mask = masks.masks()["7"]
    assert mask.kept_fraction_value() == pytest.approx(0.1, rel=1e-5)
    with torch.no_grad():
        mask.rate_logit.fill_(-50.0)
    assert mask.kept_fraction_value() == pytest.approx(0.001, rel=1e-6)  # a_min = α·a_t
    assert int(mask.mask.sum()) == kept_count(mask.mask.numel(), 0.1)  # not yet refreshed
    masks.refresh()
    assert int(mask.mask.sum()) == kept_count(mask.mask.numel(), mask.kept_fraction_value())


def test_mask_is_sorted_once_per_optimiser_step(default_cnn: nn.Sequential, monkeypatch) -> None:
    masks = attach_masks(default_cnn, 0.05)
    calls = []
    original = parametrization.topk_mask
    monkeypatch.setattr(parametrization, "topk_mask", lambda *a: calls.append(1) or original(*a))
    optimiser = torch.optim.SGD(masks.score_parameters(), lr=0.1)
    loss = PGDATLoss(eps=0.1, steps=5)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    for step in range(2):
        masks.refresh()
        before = len(calls)
        (loss(default_cnn, x, y) + masks.compression_loss()).backward()
        assert len(calls) == before  # 5 attack steps + the loss reuse the refreshed mask
        optimiser.step()
        optimiser.zero_grad()
    assert len(calls) == 2 * len(masks.layers)


def test_a_forward_after_an_update_uses_the_new_mask(sequential: nn.Sequential) -> None:
    masks = attach_masks(sequential, 0.2, method="hydra")
    mask = masks.masks()["0"]
    with torch.no_grad():
        mask.scores.mul_(-1).add_(torch.randn_like(mask.scores))
    sequential(torch.randn(1, 1, 12, 12))
    assert torch.equal(mask.mask, parametrization.topk_mask(mask.scores, kept_count(mask.scores.numel(), 0.2)))


def test_compression_loss_counts_parameters(sequential: nn.Sequential) -> None:
    masks = attach_masks(sequential, 0.1, kept_init=0.4)
    sizes = [8 * 9, 16 * 8 * 9, 32 * 576, 4 * 32]
    expected = sum(n * 0.4 for n in sizes) / (0.1 * sum(sizes)) - 1
    assert float(masks.compression_loss().detach()) == pytest.approx(expected, rel=1e-4)
    masks.compression_loss().backward()
    grads = [abs(float(m.rate_logit.grad)) for m in masks.masks().values()]
    assert grads[2] == max(grads)  # the biggest layer is pushed hardest (∝ n_l)
    assert not masks.target_reached()


def test_channel_compression_counts_flops_through_groups(sequential: nn.Sequential) -> None:
    masks = attach_masks(sequential, 0.5, mode="channel", example_inputs=torch.randn(2, 1, 12, 12))
    costs = masks.costs.layers
    assert costs["0"].dense == 8 * 9 * 144 and costs["3"].dense == 16 * 72 * 36
    assert costs["3"].outputs == (("3", 1.0),) and costs["3"].inputs == (("0", 1.0),)
    assert costs["9"].outputs == () and costs["9"].inputs == (("7", 1.0),)  # the classifier keeps its outputs
    half = masks.costs.cost({"0": 0.5, "3": 1.0, "7": 1.0})
    full = masks.costs.cost({})
    assert float(full - half) == pytest.approx(0.5 * (costs["0"].dense + costs["3"].dense))


def test_residual_stream_is_one_group(residual: nn.Sequential) -> None:
    masks = attach_masks(residual, 0.5, mode="channel", example_inputs=torch.randn(1, 3, 16, 16))
    stream = next(g for g in masks.groups.values() if any(m is residual[6].shortcut[0] for m, _, _ in g.outputs))
    members = {m for m, _, _ in stream.outputs}
    assert residual[6].residual[3] in members and residual[7].residual[3] in members
    assert residual[7].residual[0] not in members  # a block's inner conv has its own group
    inner = masks.costs.layers["7.residual.0"]
    assert [name for name, _ in inner.inputs] == [stream.name]  # its input is the stream, whole


@pytest.mark.parametrize("builder", [torchvision.models.resnet18, torchvision.models.mobilenet_v3_small,
                                     torchvision.models.squeezenet1_1])
def test_wraps_torchvision_classifiers(builder) -> None:
    torch.manual_seed(0)
    model = builder(num_classes=5)
    masks = attach_masks(model, 0.1, method="harp")
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(masks.layers) == len(convs)
    model.eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert masks.kept_cost_fraction() == pytest.approx(default_kept_init(0.1), abs=0.01)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_target_outside_unit_interval_is_refused(sequential: nn.Sequential, value: float) -> None:
    with pytest.raises(MaskingError, match="target_kept"):
        attach_masks(sequential, value)


def test_model_without_prunable_layer_is_refused() -> None:
    with pytest.raises(MaskingError, match="no prunable layer"):
        attach_masks(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.5)


def test_unsupported_layer_is_named() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(UnsupportedLayerError, match="'0' is Conv1d"):
        attach_masks(model, 0.5)
    assert len(attach_masks(model, 0.5, ignored_layers=[model[0]]).layers) == 1


def test_channel_mode_input_errors(sequential: nn.Sequential) -> None:
    with pytest.raises(MaskingError, match="example_inputs"):
        attach_masks(sequential, 0.5, mode="channel")
    with pytest.raises(MaskingError, match=r"example_inputs of shape \(1, 3, 32, 32\)"):
        attach_masks(sequential, 0.5, mode="channel", example_inputs=torch.randn(1, 3, 32, 32))


def test_attaching_twice_is_refused(sequential: nn.Sequential) -> None:
    attach_masks(sequential, 0.5)
    with pytest.raises(MaskingError, match="already has a parametrized weight"):
        attach_masks(sequential, 0.5)


def _set_rates(masks, kept: dict[str, float]) -> None:
    with torch.no_grad():
        for name, value in kept.items():
            mask = masks.masks()[name]
            share = (value - float(mask.min_kept)) / (1 - float(mask.min_kept))
            mask.rate_logit.fill_(math.log(share / (1 - share)))
    masks.refresh()


def test_target_is_judged_on_the_actual_masks_not_on_rounded_lc(sequential: nn.Sequential) -> None:
    masks = attach_masks(sequential, 0.1, kept_init=0.5)
    _set_rates(masks, {name: 0.1 * (1 + 2e-4) for name in masks.layers})  # rates hover just above
    assert round(float(masks.compression_loss().detach()), 4) > 0  # methods.md's test says "not yet"
    assert masks.kept_cost_fraction() == pytest.approx(masks.budget_fraction())  # same counts as HYDRA
    assert masks.target_reached()
    _set_rates(masks, {"7": 0.105})  # the biggest layer keeps 5% more than the budget allows
    assert not masks.target_reached()
    assert attach_masks(tiny_cnn(), 0.1, method="hydra").target_reached()


def test_channel_mode_leaves_modes_and_bn_statistics_alone(sequential: nn.Sequential) -> None:
    before = {name: buffer.clone() for name, buffer in sequential.named_buffers()}
    attach_masks(sequential, 0.5, mode="channel", example_inputs=torch.rand(1, 1, 12, 12))
    assert all(m.training for m in sequential.modules())  # Torch-Pruning's trace sets eval mode
    after = dict(sequential.named_buffers())
    for name, buffer in before.items():
        assert torch.equal(after[name], buffer), name
