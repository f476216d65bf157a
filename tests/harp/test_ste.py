"""Straight-through gradients of methods.md §1, checked against autograd on θ⊙M."""
import torch
from torch import nn

from harp_plugin.masking import attach_masks, remove_masks
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


def _gated_reference(model: nn.Sequential, end: nn.Module, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∂L/∂M by plain autograd for a leaf mask multiplying ``end``'s output channels."""
    leaf = mask.clone().requires_grad_(True)
    handle = end.register_forward_hook(lambda _m, _i, out: out * leaf.reshape(1, -1, *[1] * (out.dim() - 2)))
    model(x).pow(2).sum().backward()
    handle.remove()
    return leaf.grad


def test_channel_mask_gates_the_output_and_sums_over_the_channel() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(36, 3))
    x = torch.randn(2, 2, 5, 5)
    expected_dm = _gated_reference(model, model[0], torch.tensor([1.0, 0.0, 0.0, 1.0]), x)
    masks = attach_masks(model, 0.5, mode="channel", method="hydra", example_inputs=x)
    mask = masks.masks()["0"]
    with torch.no_grad():  # the reference's mask: keep channels 0 and 3
        mask.scores.copy_(torch.tensor([0.9, 0.1, 0.2, 0.8]))
    model(x).pow(2).sum().backward()
    assert mask.mask.tolist() == [1.0, 0.0, 0.0, 1.0]
    torch.testing.assert_close(mask.scores.grad, expected_dm * torch.sign(mask.scores.detach()))


def test_channel_gate_sits_after_batchnorm_so_pruned_channels_output_zero() -> None:
    """A zero-weight channel leaves a train-mode BN as β with a 1/sqrt(eps)-scaled gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 3))
    nn.init.uniform_(model[1].bias, 0.5, 1.0)
    x = torch.randn(8, 1, 5, 5)
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected_dm = _gated_reference(model, model[1], keep, x)
    masks = attach_masks(model, 0.5, mode="channel", method="harp", kept_init=0.5, example_inputs=x)
    mask = masks.masks()["0"]
    with torch.no_grad():
        mask.scores.copy_(torch.tensor([0.9, 0.1, 0.8, 0.2]))
    outputs = []
    spy = model[1].register_forward_hook(lambda _m, _i, out: outputs.append(out))
    model(x).pow(2).sum().backward()
    spy.remove()
    assert torch.equal(outputs[-1][:, [1, 3]], torch.zeros(8, 2, 3, 3))
    torch.testing.assert_close(mask.scores.grad, expected_dm * torch.sign(mask.scores.detach()))
    sigma = torch.sigmoid(mask.rate_logit.detach())
    torch.testing.assert_close(mask.rate_logit.grad, expected_dm.sum() * (1 - float(mask.min_kept)) * sigma * (1 - sigma))
    remove_masks(masks, how="dense")
    assert not model[1]._forward_hooks  # the gate leaves with the masks


def test_frozen_weight_gets_no_gradient_but_scores_do() -> None:
    weight = torch.randn(3, 4)
    scores = torch.randn(3, 4, requires_grad=True)
    kept = torch.tensor(0.5)
    out = MaskedWeight.apply(weight, scores, kept, (scores.abs() > 0.5).float(), 0)
    out.sum().backward()
    torch.testing.assert_close(scores.grad, weight * torch.sign(scores.detach()))
