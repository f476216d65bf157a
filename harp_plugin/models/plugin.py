"""Registers the built-in models."""
from __future__ import annotations

from harp_plugin.models.certified_cnn import certified_cnn
from harp_plugin.models.cifar_deep import cifar_model_deep
from harp_plugin.models.resnet import resnet18
from harp_plugin.models.small_cnn import small_cnn
from harp_plugin.models.vgg import vgg16_bn
from harp_plugin.registry import hookimpl


@hookimpl
def harp_models() -> dict:
    return {
        "small-cnn": small_cnn,
        "certified-cnn": certified_cnn,
        "cifar-model-deep": cifar_model_deep,
        "vgg16-bn": vgg16_bn,
        "resnet18": resnet18,
    }
