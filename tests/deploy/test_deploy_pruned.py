"""save_pruned / load_pruned: any pruned structure reloads into its dense architecture with
the pruned model's outputs; masks and learned ratios come back; bad files are clear errors."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import prune

from harp_plugin import HarpImportance, load_pruned, save_pruned
from harp_plugin.deploy import read_pruned
from harp_plugin.masking import attach_masks
from harp_plugin.models import cifar_model_deep, resnet18, small_cnn, vgg16_bn
from harp_plugin.robust.checkpoint import CheckpointError, save_checkpoint
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma

from deploy_helpers import random_loader


def _harp_pruned(factory: Callable[[], nn.Module], shape: tuple[int, ...], method: str) -> tuple[nn.Module, HarpImportance]:
    """``factory()`` with channels removed by tp.MetaPruner and HarpImportance (short fit)."""
    torch.manual_seed(0)
    model = factory()
    example = torch.rand(1, *shape)
    importance = HarpImportance(0.5, method, kept_init=0.6, gamma=IncrementalGamma(2.0, period=0.5))
    if method == "lwm":
        importance.fit(model, example_inputs=example)
    else:
        loader = random_loader(shape, classes=10)
        importance.fit(model, loader, loss=PGDATLoss(eps=0.03, steps=1), val_loader=loader,
                       config=TrainConfig(epochs=1, lr=0.5), strict=False)
    importance.make_pruner(model, example).step()
    return model.eval(), importance


def _assert_same_outputs(pruned: nn.Module, loaded: nn.Module, shape: tuple[int, ...], same_names: bool = True) -> None:
    inputs = torch.rand(3, *shape, generator=torch.Generator().manual_seed(1))
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(inputs), pruned(inputs))
    if not same_names:  # masks attached as parametrizations there, as torch.nn.utils.prune masks here
        return
    shapes = {name: p.shape for name, p in pruned.named_parameters()}
    assert {name: p.shape for name, p in loaded.named_parameters()} == shapes


PLUGIN_MODELS = {
    "small-cnn": (lambda: small_cnn(width=8), (1, 28, 28), "harp"),
    "resnet18": (lambda: resnet18(num_classes=10, width=8, input_size=16), (3, 16, 16), "lwm"),
    "cifar-model-deep": (lambda: cifar_model_deep(num_classes=10, input_size=16), (3, 16, 16), "lwm"),
    "vgg16-bn": (lambda: vgg16_bn(num_classes=10, in_channels=1, input_size=8), (1, 8, 8), "lwm"),
    "torchvision-resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32), "harp"),
    "torchvision-mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), (3, 32, 32), "lwm"),
}


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_a_harp_pruned_model_reloads_with_the_same_outputs(tmp_path: Path, name: str) -> None:
    factory, shape, method = PLUGIN_MODELS[name]
    pruned, importance = _harp_pruned(factory, shape, method)
    dense_parameters = sum(p.numel() for p in factory().parameters())
    assert sum(p.numel() for p in pruned.parameters()) < dense_parameters
    save_pruned(pruned, tmp_path / "pruned.pt", learned_ratios=importance.learned_kept_fractions())
    loaded = load_pruned(factory, tmp_path / "pruned.pt")
    _assert_same_outputs(pruned, loaded, shape)
    ratios = read_pruned(tmp_path / "pruned.pt", "cpu").learned_ratios
    assert ratios == pytest.approx(importance.learned_kept_fractions()) and 0 < min(ratios.values()) < 1


def _small_vit() -> torchvision.models.VisionTransformer:
    """vit_b_16's architecture (patch 16) at 32×32 with 2 layers, 4 heads, width 32."""
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )


def test_a_vision_transformer_with_a_narrower_residual_stream_reloads(tmp_path: Path) -> None:
    """HarpImportance's learned ratios narrow the residual stream and the MLPs: LayerNorm
    shapes, attention embed/head dims, the class token and ``hidden_dim`` all change."""
    pruned, _ = _harp_pruned(_small_vit, (3, 32, 32), "lwm")
    pruned.hidden_dim = pruned.conv_proj.out_channels  # torchvision reads it in forward
    attention = pruned.encoder.layers[0].self_attention
    assert pruned.hidden_dim < 32 and pruned.class_token.shape[-1] == attention.embed_dim == pruned.hidden_dim
    assert pruned.encoder.layers[0].mlp[0].out_features < 64
    save_pruned(pruned, tmp_path / "vit.pt")
    loaded = load_pruned(_small_vit(), tmp_path / "vit.pt")
    assert loaded.hidden_dim == pruned.hidden_dim
    assert loaded.encoder.layers[1].ln_1.normalized_shape == (pruned.hidden_dim,)
    _assert_same_outputs(pruned, loaded, (3, 32, 32))


@pytest.mark.parametrize("mode", ["unstructured", "channel"])
def test_attached_masks_save_as_masks_with_their_learned_ratios(tmp_path: Path, mode: str) -> None:
    torch.manual_seed(0)
    model = resnet18(num_classes=10, width=8)
    masks = attach_masks(model, 0.3, mode=mode, method="harp", example_inputs=torch.rand(1, 3, 16, 16))
    for mask in masks.masks().values():  # learned-looking scores, so masks differ per layer
        mask.scores.data.normal_()
        mask.refresh()
    model.eval()
    save_pruned(model, tmp_path / "masked.pt", masks=masks)
    masked_modules = [module for module, _ in masks.gates] or list(masks.layers.values())
    assert all(hasattr(module, "parametrizations") for module in masked_modules), "the model was changed"
    loaded = load_pruned(lambda: resnet18(num_classes=10, width=8), tmp_path / "masked.pt")
    _assert_same_outputs(model, loaded, (3, 16, 16), same_names=False)
    record = read_pruned(tmp_path / "masked.pt", "cpu")
    assert record.learned_ratios == pytest.approx({k: float(v) for k, v in masks.kept_fractions().items()})
    if mode == "unstructured":
        first = next(iter(masks.layers))
        assert torch.equal(record.masks()[f"{first}.weight"], masks.masks()[first].mask)


def test_torch_prune_masks_reload_and_fold(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = small_cnn(width=4)
    prune.l1_unstructured(model[2][0], "weight", amount=0.7)
    save_pruned(model.eval(), tmp_path / "masked.pt")
    loaded = load_pruned(small_cnn(width=4), tmp_path / "masked.pt")
    _assert_same_outputs(model, loaded, (1, 28, 28))
    assert torch.equal(loaded[2][0].weight_mask, model[2][0].weight_mask)
    folded = load_pruned(small_cnn(width=4), tmp_path / "masked.pt", fold_masks=True)
    assert "weight_mask" not in dict(folded[2][0].named_buffers())
    assert torch.equal(folded[2][0].weight, model[2][0].weight) and (folded[2][0].weight == 0).float().mean() >= 0.7
    _assert_same_outputs(model, folded, (1, 28, 28), same_names=False)


def _saved_small_cnn(path: Path) -> None:
    pruned, _ = _harp_pruned(lambda: small_cnn(width=8), (1, 28, 28), "lwm")
    save_pruned(pruned, path)


def _unchanged(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_another_architecture_is_refused_naming_the_first_layer_that_differs(tmp_path: Path) -> None:
    _saved_small_cnn(tmp_path / "pruned.pt")
    other = resnet18(num_classes=10, width=8)
    before = _unchanged(other)
    with pytest.raises(CheckpointError, match=r"first layer that differs is '1' \(Sequential\) in the checkpoint, "
                                              r"'1' \(Conv2d\) in the model"):
        load_pruned(other, tmp_path / "pruned.pt")
    wider = small_cnn(width=8, num_classes=10)
    wider.add_module("extra", nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match="the model has layer 'extra'"):
        load_pruned(wider, tmp_path / "pruned.pt")
    state = other.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.items()) and state.keys() == before.keys()


def test_a_layer_of_another_type_is_named(tmp_path: Path) -> None:
    _saved_small_cnn(tmp_path / "pruned.pt")
    model = small_cnn(width=8)
    model[7] = nn.Tanh()  # a ReLU in the saved model
    with pytest.raises(CheckpointError, match=r"'7' \(ReLU\) in the checkpoint, '7' \(Tanh\) in the model"):
        load_pruned(model, tmp_path / "pruned.pt")


def test_truncated_foreign_and_record_less_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "pruned.pt"
    _saved_small_cnn(path)
    model = small_cnn(width=8)
    before = _unchanged(model)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="pruned.pt. is corrupt or not a harp-prune checkpoint"):
        load_pruned(model, path)
    save_checkpoint({"model": small_cnn(width=8).state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no structure record.*plain state dict"):
        load_pruned(model, tmp_path / "plain.pt")
    (tmp_path / "foreign.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="foreign.pt. is corrupt or not a harp-prune checkpoint"):
        load_pruned(model, tmp_path / "foreign.pt")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_parametrized_model_without_its_mask_set_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    model = small_cnn(width=4)
    attach_masks(model, 0.5)
    with pytest.raises(CheckpointError, match=r"layer '1.0' carries parametrizations on \['weight'\]: pass the MaskSet \(masks="):
        save_pruned(model, tmp_path / "pruned.pt")
    assert list(tmp_path.iterdir()) == []
