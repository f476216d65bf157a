"""Rewind surviving weights to saved values between pruning rounds (lottery-ticket style).

A snapshot (the model now, or a saved ``state_dict`` of the same dense architecture: its
initialisation, or its state after K epochs) is kept per layer; the kept channel indices are
tracked through each pruning group as Torch-Pruning removes channels, so after any number of
rounds the surviving weights can be restored to their snapshot values. A parametrized
layer (e.g. a HARP/HYDRA mask) is rewound underneath its parametrization: the stored
``original`` tensor gets the snapshot, the mask stays as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


@dataclass
class _Slot:
    """One tensor to restore: where it lives, its snapshot value, whose channels index it."""

    module: nn.Module
    name: str
    snapshot: Tensor
    layer: nn.Module


class WeightRewinder:
    """Snapshot ``model`` now (or take ``state``); ``step(pruner)`` prunes one round while
    tracking indices; ``rewind()`` restores the survivors' snapshot values (parameters and BN
    statistics, parametrized weights included).

    Optimisers must be rebuilt after pruning anyway (new parameter objects); ``rewind``
    copies in place, so it adds no further invalidation.
    """

    def __init__(self, model: nn.Module, state: Optional[Mapping[str, Tensor]] = None) -> None:
        self.slots: list[_Slot] = []
        self.kept: dict[nn.Module, dict[str, Tensor]] = {}
        masks = {  # the parametrizations themselves (e.g. learned scores) are not rewound
            id(sub) for m in model.modules() if isinstance(m, parametrize.ParametrizationList)
            for child in m.children() for sub in child.modules()
        }
        for prefix, module in model.named_modules():
            if id(module) in masks:
                continue
            layer, layer_prefix = module, prefix
            if isinstance(module, parametrize.ParametrizationList):
                layer_prefix, _, tensor_name = prefix.rpartition(".parametrizations.")
                layer = model.get_submodule(layer_prefix)
            tensors = (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))
            for name, tensor in tensors:
                if tensor.dim() == 0:
                    continue
                if isinstance(module, parametrize.ParametrizationList):
                    if name != "original":
                        continue
                    name_in_state = _join(layer_prefix, tensor_name)
                else:
                    name_in_state = _join(prefix, name)
                self.slots.append(_Slot(module, name, _snapshot(state, name_in_state, tensor), layer))
                self._track(layer, tensor)

    def _track(self, layer: nn.Module, tensor: Tensor) -> None:
        kept = self.kept.setdefault(layer, {"out": torch.arange(tensor.shape[0])})
        if "in" not in kept and tensor.dim() > 1 and getattr(layer, "groups", 1) == 1:
            kept["in"] = torch.arange(tensor.shape[1])

    def step(self, pruner) -> None:
        """One ``pruner.step()``, recording which channels each group removes."""
        for group in pruner.step(interactive=True):
            self.record(group, pruner.DG.is_out_channel_pruning_fn)
            group.prune()

    def record(self, group, is_out_channel_pruning_fn) -> None:
        """Update kept indices for a group about to be pruned (call before ``group.prune()``)."""
        for dep, idxs in group:
            kept = self.kept.get(dep.layer)
            side = "out" if is_out_channel_pruning_fn(dep.pruning_fn) else "in"
            if kept is None or side not in kept:
                continue
            mask = torch.ones(len(kept[side]), dtype=torch.bool)
            mask[torch.as_tensor(list(idxs), dtype=torch.long)] = False
            kept[side] = kept[side][mask]

    @torch.no_grad()
    def rewind(self) -> None:
        """Copy the snapshot values of the kept channels into the model, in place."""
        for slot in self.slots:
            current = getattr(slot.module, slot.name)
            kept = self.kept[slot.layer]
            value = slot.snapshot.index_select(0, kept["out"].to(slot.snapshot.device))
            if value.dim() > 1 and "in" in kept:
                value = value.index_select(1, kept["in"].to(slot.snapshot.device))
            if value.shape != current.shape:
                raise ValueError(
                    f"cannot rewind {type(slot.layer).__name__}.{slot.name}: tracked shape {tuple(value.shape)} "
                    f"!= current {tuple(current.shape)} (was it pruned outside step()/record()?)"
                )
            current.copy_(value.to(current))


def _snapshot(state: Optional[Mapping[str, Tensor]], name: str, current: Tensor) -> Tensor:
    if state is None:
        return current.detach().clone()
    if name not in state:
        raise ValueError(f"the rewind state has no entry {name!r}: it was saved from another architecture")
    saved = state[name]
    if saved.shape != current.shape:
        raise ValueError(
            f"the rewind state's {name!r} has shape {tuple(saved.shape)}, the model's {tuple(current.shape)}: "
            "take the snapshot before pruning"
        )
    return saved.detach().clone().to(current.device)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
