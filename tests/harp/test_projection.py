"""HARP's projection onto the budget: lands within it, keeps the learned order, any logits."""
import pytest
import torch
import torch_pruning as tp

from harp_plugin.importance import HarpImportance
from harp_plugin.masking import attach_masks, conv_linear_flops, project_onto_budget
from harp_plugin.masking.errors import MaskingError
from harp_plugin.models.resnet import resnet18
from tests.harp.conftest import tiny_cnn


@pytest.mark.parametrize("logits", [(-3.0, 0.5, 2.0, -1.0), (-800.0, 800.0, 0.0, 5.0)])
def test_projection_lands_on_the_budget_in_the_learned_order(logits: tuple[float, ...]) -> None:
    torch.manual_seed(0)
    masks = attach_masks(tiny_cnn(), 0.1)
    with torch.no_grad():
        for mask, logit in zip(masks.masks().values(), logits):
            mask.rate_logit.fill_(logit)
    projection = project_onto_budget(masks)
    units = {name: mask.units for name, mask in masks.masks().items()}
    kept = {name: int(mask.mask.sum()) for name, mask in masks.masks().items()}
    assert kept == projection.counts
    share = sum(kept.values()) / sum(units.values())  # parameter cost, by hand
    budget = sum(max(1, n - int(0.9 * n + 1e-9)) for n in units.values()) / sum(units.values())
    assert share == pytest.approx(projection.kept_cost) and projection.budget == pytest.approx(budget)
    assert budget * (1 - 0.005) <= share <= budget
    fractions = [kept[name] / units[name] for name in units]
    order = sorted(range(len(logits)), key=lambda i: logits[i])
    # a higher learned logit never keeps a smaller fraction (one entry of slack for the fill)
    for low, high in zip(order, order[1:]):
        assert fractions[high] + 1 / list(units.values())[high] >= fractions[low]
    assert all(not m.rate_logit.requires_grad for m in masks.masks().values())  # rates fixed, scores learn on
    assert all(m.scores.requires_grad for m in masks.masks().values())


def test_a_resnet_pruned_after_projection_keeps_its_budget_within_half_a_percent() -> None:
    """ResNet18 width 8 at 64 % of channels pruned: with these rates the single-channel fill alone
    stopped 0.65 % below the budget (no further channel fitted); giving back a channel of a
    low-rate group to fill with cheaper ones lands within 0.5 %. Budget and result are counted by
    Torch-Pruning (uniform pruning; the physically pruned network)."""
    example, kept = torch.zeros(1, 1, 28, 28), 0.35931579589843754
    uniform = resnet18(10, in_channels=1, width=8)
    dense = conv_linear_flops(uniform, example)
    tp.MetaPruner(uniform, example, importance=tp.importance.RandomImportance(), pruning_ratio=1 - kept,
                  ignored_layers=[uniform[-1]]).step()
    budget = conv_linear_flops(uniform, example) / dense
    torch.manual_seed(5)
    model = resnet18(10, in_channels=1, width=8)
    masks = attach_masks(model, kept, mode="channel", method="harp", example_inputs=example,
                         ignored_layers=[model[-1]])
    with torch.no_grad():
        for mask in masks.masks().values():
            mask.rate_logit.normal_(0, 1.5)
    project_onto_budget(masks)
    importance = HarpImportance(kept)
    importance.adopt(masks, example)
    importance.make_pruner(model, example).step()
    share = conv_linear_flops(model, example) / dense
    assert budget * (1 - 0.005) <= share <= budget * (1 + 1e-9)


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5])
def test_a_budget_outside_zero_one_is_refused_by_value_and_nothing_changes(budget: float) -> None:
    masks = attach_masks(tiny_cnn(), 0.5)
    before = {name: (m.mask.clone(), m.rate_logit.detach().clone()) for name, m in masks.masks().items()}
    with pytest.raises(MaskingError, match=rf"budget must be a share of the dense cost in \(0, 1\], got {budget}"):
        project_onto_budget(masks, budget)
    for name, m in masks.masks().items():
        assert torch.equal(m.mask, before[name][0]) and torch.equal(m.rate_logit.detach(), before[name][1])
        assert m.rate_logit.requires_grad, "a refused projection leaves the rates trainable"


def test_masks_without_learned_rates_are_refused_by_method() -> None:
    masks = attach_masks(tiny_cnn(), 0.5, method="hydra")
    with pytest.raises(MaskingError, match="only HARP's learned rates are projected; these masks are 'hydra'"):
        project_onto_budget(masks)


def test_an_explicit_budget_replaces_the_uniform_one() -> None:
    """Budget 1.0 (keep everything allowed) with every rate pushed to the floor: the counts must
    rise to the whole network, not stop at the uniform masks' 50 % share (parameter cost by hand)."""
    masks = attach_masks(tiny_cnn(), 0.5)
    with torch.no_grad():
        for mask in masks.masks().values():
            mask.rate_logit.fill_(-5.0)
    projection = project_onto_budget(masks, 1.0)
    assert projection.counts == {name: m.units for name, m in masks.masks().items()}
    assert projection.budget == 1.0
