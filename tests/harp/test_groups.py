"""One mask per Torch-Pruning group: what HARP trains is what Torch-Pruning removes."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import parametrize
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.vision_transformer import VisionTransformer

from harp_plugin.importance import HarpImportance
from harp_plugin.masking import MaskSet, UnsupportedLayerError, attach_masks


def _random_group_masks(model: nn.Module, example_inputs: torch.Tensor) -> MaskSet:
    """HYDRA group masks with random scores (so nothing coincides with magnitude order)."""
    masks = attach_masks(model, 0.5, mode="channel", method="hydra", example_inputs=example_inputs)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mask in masks.masks().values():
            mask.scores.copy_(torch.rand(mask.scores.shape, generator=generator))
    masks.refresh()
    return masks


def _warm_batchnorm(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Non-trivial running statistics, so eval-mode BN is not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape) * 2 + 0.5)
    model.eval()


@pytest.mark.parametrize("builder", [
    lambda: __import__("harp_plugin.models.resnet", fromlist=["resnet18"]).resnet18(num_classes=4, width=8),
    lambda: torchvision.models.resnet18(num_classes=4),
])
def test_pruned_resnet_equals_the_masked_one(builder) -> None:
    torch.manual_seed(0)
    model = builder()
    shape = (3, 32, 32)
    _warm_batchnorm(model, shape)
    example_inputs = torch.randn(1, *shape)
    masks = _random_group_masks(model, example_inputs)
    inputs = torch.randn(4, *shape)
    with torch.no_grad():
        masked = model(inputs)
    kept = {name: int(mask.mask.sum()) for name, mask in masks.masks().items()}
    imp = HarpImportance(0.5, "hydra")
    imp.adopt(masks, example_inputs)
    imp.make_pruner(model, example_inputs).step()
    with torch.no_grad():
        pruned = model(inputs)
    torch.testing.assert_close(pruned, masked, rtol=1e-4, atol=1e-5)
    for name, count in kept.items():  # every group lost exactly the channels its mask switched off
        assert model.get_submodule(name).weight.shape[0] == count, name


def test_a_residual_stream_is_zero_where_its_mask_is() -> None:
    from harp_plugin.models.resnet import resnet18
    torch.manual_seed(0)
    model = resnet18(num_classes=4, width=8)
    masks = _random_group_masks(model, torch.randn(1, 3, 16, 16))
    stream = next(g for g in masks.groups.values() if any(m is model[6].shortcut[0] for m, _, _ in g.outputs))
    off = masks.masks()[stream.name].mask == 0
    seen = []
    model[6].register_forward_hook(lambda _m, _i, out: seen.append(out))
    model.train()(torch.randn(4, 3, 16, 16))  # train-mode BN too
    assert off.any() and torch.equal(seen[0][:, off], torch.zeros_like(seen[0][:, off]))
    assert not any(m._forward_hooks for m in model.modules() if m is not model[6])  # parametrizations only


def _prune_and_check(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Group masks on a channels-last/attention model; after removal each root keeps the masked set."""
    example_inputs = torch.randn(1, *shape)
    masks = _random_group_masks(model, example_inputs)
    assert masks.groups
    roots = {name: (g.root, g.root.bias.detach().clone(), masks.masks()[name].mask.bool().repeat(g.channel_groups))
             for name, g in masks.groups.items() if isinstance(g.root, (nn.Conv2d, nn.Linear))
             and g.root.bias is not None and g.root.bias.shape[0] == g.channels}
    before = sum(p.numel() for p in model.parameters())
    imp = HarpImportance(0.5, "hydra")
    imp.adopt(masks, example_inputs)
    imp.make_pruner(model, example_inputs).step()
    if isinstance(model, VisionTransformer):
        model.hidden_dim = model.conv_proj.out_channels  # torchvision reads it in forward
    assert model.eval()(torch.randn(2, *shape)).shape == (2, 4)
    assert sum(p.numel() for p in model.parameters()) < before
    assert roots
    for name, (root, bias, keep) in roots.items():  # the output channels kept are the unmasked ones
        torch.testing.assert_close(root.bias, bias[keep], msg=name)


def test_convnext_channels_last_layers_prune_with_group_masks() -> None:
    torch.manual_seed(0)
    model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=4)
    _prune_and_check(model, (3, 32, 32))


def test_vision_transformer_prunes_with_group_masks() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                              mlp_dim=64, num_classes=4)
    _prune_and_check(model, (3, 32, 32))


def test_channel_gates_are_parametrizations_on_linear_rows_whatever_the_layout() -> None:
    """ConvNeXt's Linear layers act on the last dim; the mask multiplies weight rows (dim 0)."""
    torch.manual_seed(0)
    model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=4)
    masks = attach_masks(model, 0.5, mode="channel", method="hydra", example_inputs=torch.randn(1, 3, 32, 32))
    block = model.features[1][0].block
    hidden = block[3]  # Linear(16, 64) on channels-last activations
    assert parametrize.is_parametrized(hidden, "weight") and parametrize.is_parametrized(hidden, "bias")
    off = masks.masks()["features.1.0.block.3"].mask == 0
    assert torch.equal(hidden.weight[off], torch.zeros_like(hidden.weight[off]))


def test_a_layer_of_unknown_layout_is_named() -> None:
    class Scale(nn.Module):  # a per-channel layer Torch-Pruning is told to prune, but HARP cannot read
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain.view(1, -1, 1, 1)

    class ScalePruner(__import__("torch_pruning").pruner.BasePruningFunc):
        def prune_out_channels(self, layer, idxs):
            keep = [i for i in range(layer.gain.numel()) if i not in idxs]
            layer.gain = nn.Parameter(layer.gain.data[keep])
            return layer
        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer):
            return layer.gain.numel()
        get_in_channels = get_out_channels

    model = nn.Sequential(nn.Conv2d(1, 4, 3), Scale(), nn.Flatten(), nn.Linear(4 * 36, 2))
    with pytest.raises(UnsupportedLayerError, match=r"layout of layer '1' \(Scale\)"):
        attach_masks(model, 0.5, mode="channel", example_inputs=torch.randn(1, 1, 8, 8),
                     pruner_options={"customized_pruners": {Scale: ScalePruner()}})
