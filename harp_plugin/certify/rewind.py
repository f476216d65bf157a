"""Rewind surviving weights to their initial values between pruning rounds (lottery-ticket style).

The initial state of every layer is kept, keyed by module; the kept channel indices are
tracked through each pruning group as Torch-Pruning removes channels, so after any number of
rounds the surviving weights can be restored to their initial values.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class WeightRewinder:
    """Snapshot ``model`` now; ``step(pruner)`` prunes one round while tracking indices;
    ``rewind()`` restores the survivors' initial values (parameters and BN statistics).

    Optimisers must be rebuilt after pruning anyway (new parameter objects); ``rewind``
    copies in place, so it adds no further invalidation. Layers whose weight is carried by a
    parametrisation are not snapshotted (their ``weight`` is not a plain tensor).
    """

    def __init__(self, model: nn.Module) -> None:
        self.initial: dict[nn.Module, dict[str, Tensor]] = {}
        self.kept: dict[nn.Module, dict[str, Tensor]] = {}
        for module in model.modules():
            state = {n: t.detach().clone() for n, t in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))}
            state = {n: t for n, t in state.items() if t.dim() > 0}
            if state:
                self.initial[module] = state
                first = next(iter(state.values()))
                self.kept[module] = {"out": torch.arange(first.shape[0])}
                if first.dim() > 1 and getattr(module, "groups", 1) == 1:
                    self.kept[module]["in"] = torch.arange(first.shape[1])

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
        for module, state in self.initial.items():
            kept = self.kept[module]
            for name, initial in state.items():
                current = getattr(module, name)
                value = initial.index_select(0, kept["out"].to(initial.device))
                if value.dim() > 1 and "in" in kept:
                    value = value.index_select(1, kept["in"].to(initial.device))
                if value.shape != current.shape:
                    raise ValueError(
                        f"cannot rewind {type(module).__name__}.{name}: tracked shape {tuple(value.shape)} "
                        f"!= current {tuple(current.shape)} (was it pruned outside step()/record()?)"
                    )
                current.copy_(value.to(current))

