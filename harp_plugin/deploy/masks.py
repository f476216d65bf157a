"""HARP/HYDRA/LWM masks as ``torch.nn.utils.prune`` masks, which any PyTorch code can load.

A :class:`~harp_plugin.masking.MaskSet` lives in parametrizations and forward hooks that
hold its training state (scores, rate logits). What a saved model needs is only the mask:
a fine-grained mask multiplies the weight; a channel mask gates the channel's final output
(that of the BN after the layer), which equals masking that BN's γ and β, or the layer's
own weight rows and bias when no BN follows. The user's model is left as it is.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from harp_plugin.masking import MaskSet, full_masks


def masked_copy(mask_set: MaskSet) -> nn.Module:
    """A copy of ``mask_set.model`` whose masks are ``torch.nn.utils.prune`` masks (same outputs)."""
    weight_masks = full_masks(mask_set)
    channel_masks = {name: mask.mask.detach().clone() for name, mask in mask_set.masks().items()}
    model = copy.deepcopy(mask_set.model)
    for end_name, handle in zip(mask_set.gated_outputs.values(), mask_set.gates):
        model.get_submodule(end_name)._forward_hooks.pop(handle.id, None)
    for name in mask_set.layers:
        layer = model.get_submodule(name)
        _drop_weight_parametrization(layer, name)
        if name not in mask_set.gated_outputs:
            prune.custom_from_mask(layer, "weight", weight_masks[name])
            continue
        end = model.get_submodule(mask_set.gated_outputs[name])
        _mask_output_channels(end, channel_masks[name])
    return model


def _drop_weight_parametrization(layer: nn.Module, name: str) -> None:
    """θ back as the plain ``weight``, on this copy only.

    ``parametrize.remove_parametrizations`` deletes the property from the parametrized
    class, which a deep copy shares with the user's model; resetting the copy's class does not.
    """
    others = sorted(set(layer.parametrizations) - {"weight"})
    if others:
        raise ValueError(f"layer {name!r} has parametrizations on {others} besides its mask")
    original = layer.parametrizations.weight.original
    layer.__class__ = type(layer).__bases__[0]
    del layer._modules["parametrizations"]
    layer._parameters["weight"] = original


def _mask_output_channels(module: nn.Module, channel_mask: torch.Tensor) -> None:
    """Zero ``module``'s output channels where ``channel_mask`` is 0 (weight rows/γ and bias/β)."""
    for tensor_name in ("weight", "bias"):
        tensor = getattr(module, tensor_name, None)
        if tensor is None:
            continue
        shape = [-1] + [1] * (tensor.dim() - 1)
        prune.custom_from_mask(module, tensor_name, channel_mask.reshape(shape).expand_as(tensor).clone())
