"""HARP's projection onto the budget: lands within it, keeps the learned order, any logits."""
import pytest
import torch

from harp_plugin.masking import attach_masks, project_onto_budget
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
