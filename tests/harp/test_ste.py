"""Straight-through gradients of methods.md §1, checked against autograd on θ⊙M."""
import torch
from torch import nn

from harp_plugin.masking import attach_masks
from harp_plugin.masking.ste import MaskedWeight, expand_mask


def _reference_mask_grad(weight: torch.Tensor, mask: torch.Tensor, forward) -> torch.Tensor:
    """∂L/∂M by plain autograd, treating the mask as a leaf."""
    mask = mask.clone().requires_grad_(True)
    forward(weight * expand_mask(mask, weight)).backward()
    return mask.grad


def test_score_and_rate_gradients_unstructured() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    x = torch.randn(3, 6)
    masks = attach_masks(layer, 0.3, method="harp", kept_init=0.5)
    mask = masks.masks()[""]
    theta = layer.parametrizations.weight.original.detach()
    expected_dm = _reference_mask_grad(theta, mask.mask, lambda w: (x @ w.t()).pow(2).sum())
    (layer(x) - layer.bias).pow(2).sum().backward()
    torch.testing.assert_close(mask.scores.grad, expected_dm * torch.sign(mask.scores.detach()))
    sigma = torch.sigmoid(mask.rate_logit.detach())
    dr = expected_dm.sum() * (1 - mask.min_kept.float()) * sigma * (1 - sigma)
    torch.testing.assert_close(mask.rate_logit.grad, dr)
    assert layer.parametrizations.weight.original.grad is not None


def test_channel_mask_gradient_sums_over_the_channel() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)
    x = torch.randn(2, 2, 5, 5)
    masks = attach_masks(nn.Sequential(conv, nn.Flatten(), nn.Linear(36, 3)), 0.5, mode="channel",
                         method="hydra", example_inputs=x)
    mask = masks.masks()["0"]
    theta = conv.parametrizations.weight.original.detach()
    expected_dm = _reference_mask_grad(
        theta, mask.mask, lambda w: torch.nn.functional.conv2d(x, w, conv.bias.detach()).sum()
    )
    conv(x).sum().backward()
    torch.testing.assert_close(mask.scores.grad, expected_dm * torch.sign(mask.scores.detach()))
    assert mask.mask.tolist().count(1.0) == 2


def test_frozen_weight_gets_no_gradient_but_scores_do() -> None:
    weight = torch.randn(3, 4)
    scores = torch.randn(3, 4, requires_grad=True)
    kept = torch.tensor(0.5)
    out = MaskedWeight.apply(weight, scores, kept, (scores.abs() > 0.5).float())
    out.sum().backward()
    torch.testing.assert_close(scores.grad, weight * torch.sign(scores.detach()))
