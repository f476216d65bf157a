"""Weight rewinding: after physical channel removal and under parametrized masks, the
survivors get exactly their saved values (checked against indices recovered independently)."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.certify.rewind import WeightRewinder
from harp_plugin.masking import attach_masks
from harp_plugin.models import small_cnn


def _tag_channels(model: nn.Module) -> None:
    """'Training' that writes each weight's origin into it: + 1000·out_channel + 10·in_channel
    (|initial values| < 1), so the original indices of survivors can be read back."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                out_idx = torch.arange(module.out_channels).view(-1, 1, 1, 1)
                in_idx = torch.arange(module.in_channels).view(1, -1, 1, 1)
                module.weight.add_(1000.0 * out_idx + 10.0 * in_idx)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.add_(1000.0 * torch.arange(module.num_features))


def test_rewound_weights_equal_the_saved_ones_for_kept_channels() -> None:
    torch.manual_seed(0)
    model = small_cnn(width=4)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    _tag_channels(model)
    rewinder = WeightRewinder(model, saved)
    example = torch.rand(1, 1, 28, 28)
    pruner = tp.MetaPruner(model, example, importance=tp.importance.RandomImportance(), pruning_ratio=0.5,
                           iterative_steps=2, ignored_layers=[model[-1]])
    for _ in range(2):
        rewinder.step(pruner)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    origins = {}
    for name, conv in convs.items():
        tagged = conv.weight.detach()[:, :, 0, 0]
        out_idx = torch.round(tagged[:, 0] / 1000).long()
        in_idx = torch.round((tagged[0] - 1000 * out_idx[0]) / 10).long()
        origins[name] = (out_idx, in_idx)
    assert convs["1.0"].out_channels == 2 and convs["4.0"].out_channels == 8, "half the channels removed"
    rewinder.rewind()
    for name, conv in convs.items():
        out_idx, in_idx = origins[name]
        assert not torch.equal(out_idx, torch.arange(len(out_idx))), f"{name}: random pruning kept a prefix"
        expected = saved[f"{name}.weight"][out_idx][:, in_idx]
        torch.testing.assert_close(conv.weight.detach(), expected)
    bn_name = "1.1"
    out_idx = origins["1.0"][0]
    torch.testing.assert_close(model.get_submodule(bn_name).running_mean, saved[f"{bn_name}.running_mean"][out_idx])


def test_parametrized_layers_are_rewound_under_their_masks() -> None:
    torch.manual_seed(0)
    model = small_cnn(width=4)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    masks = attach_masks(model, 0.5, method="hydra")
    layer = masks.layers["1.0"]
    scores_before = layer.parametrizations.weight[0].scores.detach().clone()
    WeightRewinder(model, saved).rewind()
    torch.testing.assert_close(layer.parametrizations.weight.original.detach(), saved["1.0.weight"])
    torch.testing.assert_close(layer.parametrizations.weight[0].scores.detach(), scores_before)
    mask = layer.parametrizations.weight[0].mask
    torch.testing.assert_close(layer.weight.detach(), saved["1.0.weight"] * mask)


def test_a_state_from_another_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="has shape"):
        WeightRewinder(small_cnn(width=4), small_cnn(width=8).state_dict())
    with pytest.raises(ValueError, match="no entry '0.mean'"):
        WeightRewinder(small_cnn(width=4), {})
