"""Built-in models: shapes, sizes, and the checks every API applies to any nn.Module."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from harp_plugin.models import (
    InputNormalization,
    check_classifier_output,
    cifar_model_deep,
    final_classifier,
    resnet18,
    small_cnn,
    vgg16_bn,
)


@pytest.mark.parametrize(
    ("factory", "channels", "size"),
    [(small_cnn, 1, 28), (cifar_model_deep, 3, 32), (cifar_model_deep, 1, 28), (vgg16_bn, 3, 32), (resnet18, 3, 32)],
)
def test_models_return_logits_of_shape_batch_by_classes(factory, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = factory(num_classes=7, in_channels=channels, input_size=size)
    check_classifier_output(model, torch.rand(2, channels, size, size), 7)


def test_cifar_model_deep_has_the_papers_size() -> None:
    parameters = sum(p.numel() for p in cifar_model_deep().parameters())
    assert 0.60e6 < parameters < 0.70e6  # methods.md §4: ≈ 0.67 M on 32×32


def test_resnet_shortcut_convs_appear_only_where_shapes_change() -> None:
    model = resnet18(width=8)
    shortcuts = [m.shortcut for m in model.modules() if hasattr(m, "shortcut")]
    assert sum(isinstance(s, nn.Sequential) for s in shortcuts) == 3
    assert sum(isinstance(s, nn.Identity) for s in shortcuts) == 5


def test_input_normalization_works_in_pixel_units() -> None:
    layer = InputNormalization((0.5, 0.25), (0.5, 0.25))
    out = layer(torch.ones(1, 2, 1, 1))
    assert torch.allclose(out.flatten(), torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match="std must be positive"):
        InputNormalization((0.0,), (0.0,))
    with pytest.raises(ValueError, match="2 normalisation values for 3 input channels"):
        small_cnn(in_channels=3, mean=(0.1, 0.2))


def test_any_torchvision_classifier_is_accepted() -> None:
    model = torchvision.models.resnet18(num_classes=5)
    check_classifier_output(model, torch.rand(2, 3, 32, 32), 5)
    assert final_classifier(model) is model.fc


def test_wrong_output_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"output has shape \(2, 10\); expected \(N, classes\) = \(2, 4\)"):
        check_classifier_output(small_cnn(), torch.rand(2, 1, 28, 28), 4)
    with pytest.raises(ValueError, match="cannot run on inputs of shape"):
        check_classifier_output(small_cnn(), torch.rand(2, 3, 28, 28), 10)
    with pytest.raises(ValueError, match="no nn.Linear classifier"):
        final_classifier(nn.Sequential(nn.Conv2d(1, 1, 1)))


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_even_after_an_error(training: bool) -> None:
    from harp_plugin.models.modes import eval_mode

    model = small_cnn(width=4).train(training)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert all(m.training is training for m in model.modules())
