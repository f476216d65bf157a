"""HARP/HYDRA/LWM masks as ``torch.nn.utils.prune`` masks, which any PyTorch code can load.

A :class:`~harp_plugin.masking.MaskSet` lives in parametrizations that hold its training
state (scores, rate logits). What a saved model needs is only the mask: a fine-grained mask
multiplies the weight; a channel mask multiplies every parameter that produces the group's
channels (weight rows and biases, a BN's γ and β, …). The user's model is left as it is.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import prune

from harp_plugin.masking import MaskSet
from harp_plugin.masking.export import tensor_masks


def masked_copy(mask_set: MaskSet) -> nn.Module:
    """A copy of ``mask_set.model`` whose masks are ``torch.nn.utils.prune`` masks (same outputs)."""
    masks = tensor_masks(mask_set)
    model = copy.deepcopy(mask_set.model)
    for module_name in dict.fromkeys(name for name, _ in masks):
        _drop_parametrizations(model.get_submodule(module_name), module_name, {t for m, t in masks if m == module_name})
    for (module_name, tensor_name), mask in masks.items():
        prune.custom_from_mask(model.get_submodule(module_name), tensor_name, mask)
    return model


def _drop_parametrizations(module: nn.Module, name: str, masked: set[str]) -> None:
    """The original tensors back as plain parameters, on this copy only.

    ``parametrize.remove_parametrizations`` deletes the property from the parametrized
    class, which a deep copy shares with the user's model; resetting the copy's class does not.
    """
    others = sorted(set(module.parametrizations) - masked)
    if others:
        raise ValueError(f"layer {name!r} has parametrizations on {others} besides its mask")
    originals = {tensor: module.parametrizations[tensor].original for tensor in masked}
    module.__class__ = type(module).__bases__[0]
    del module._modules["parametrizations"]
    module._parameters.update(originals)
