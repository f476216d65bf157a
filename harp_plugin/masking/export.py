"""Leave the masked-training world: per-layer sparsity report, pruning masks, zeroed weights."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn.utils import parametrize, prune

from harp_plugin.masking.mask_set import MaskSet
from harp_plugin.masking.ste import expand_mask


@dataclass(frozen=True)
class LayerSparsity:
    """One row of the sparsity report; ``units`` are weights or output channels."""

    name: str
    kind: str
    units: int
    kept_units: int
    learned_kept: float

    @property
    def kept_fraction(self) -> float:
        return self.kept_units / self.units

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept_fraction


def sparsity_report(mask_set: MaskSet) -> list[LayerSparsity]:
    """Per-layer kept units as the masks stand now, with the (learned) kept fraction a."""
    rows = []
    for name, mask in mask_set.masks().items():
        kind = f"{type(mask_set.layers[name]).__name__}/{'group' if mask_set.mode == 'channel' else 'weight'}"
        rows.append(
            LayerSparsity(name, kind, mask.mask.numel(), int(mask.mask.sum()), mask.kept_fraction_value())
        )
    return rows


def format_report(rows: list[LayerSparsity]) -> str:
    """The report as a Markdown table, totals last."""
    lines = ["| layer | type | units | kept | kept fraction | learned a |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.kind} | {row.units} | {row.kept_units} | "
            f"{row.kept_fraction:.4f} | {row.learned_kept:.4f} |"
        )
    units, kept = sum(r.units for r in rows), sum(r.kept_units for r in rows)
    lines.append(f"| total | | {units} | {kept} | {kept / units:.4f} | |")
    return "\n".join(lines)


def full_masks(mask_set: MaskSet) -> dict[str, torch.Tensor]:
    """Each layer's mask at the weight's full shape (fine-grained); each group's channel mask."""
    masks = {}
    for name, mask in mask_set.masks().items():
        if mask_set.mode == "channel":
            masks[name] = mask.mask.detach().clone()
            continue
        weight = mask_set.layers[name].parametrizations.weight.original
        masks[name] = expand_mask(mask.mask, weight).expand_as(weight).detach().clone()
    return masks


def tensor_masks(mask_set: MaskSet) -> dict[tuple[str, str], torch.Tensor]:
    """The full-shape 0/1 mask of every masked tensor, by (module name, tensor name).

    Fine-grained: each layer's weight. Channel mode: every parameter a group gate multiplies
    (several gates on one tensor multiply), which is how a saved model carries the masks.
    """
    names = {module: name for name, module in mask_set.model.named_modules()}
    if mask_set.mode != "channel":
        return {(name, "weight"): mask for name, mask in full_masks(mask_set).items()}
    found = {}
    with torch.no_grad():
        for module, tensor_name in dict.fromkeys(mask_set.gates):
            stack = module.parametrizations[tensor_name]
            mask = torch.ones_like(stack.original)
            for gate in stack:
                mask = gate(mask)
            found[(names[module], tensor_name)] = mask
    return found


def remove_masks(mask_set: MaskSet, how: Literal["dense", "zero", "prune"] = "zero") -> dict[str, torch.Tensor]:
    """Drop the parametrizations; returns :func:`full_masks`.

    ``zero``: weights become θ ⊙ M (plain tensors, zeros where pruned). ``prune``: θ ⊙ M
    carried as ``torch.nn.utils.prune`` masks (``weight_orig`` + ``weight_mask``), so
    fine-tuning with plain PyTorch keeps pruned weights at zero (fine-grained only).
    ``dense``: back to θ (Torch-Pruning then removes channels physically).
    """
    if how not in ("dense", "zero", "prune"):
        raise ValueError(f"how must be 'dense', 'zero' or 'prune', got {how!r}")
    if how == "prune" and mask_set.mode == "channel":
        raise ValueError("how='prune' carries fine-grained masks; remove channel masks with 'dense' or 'zero'")
    masks = full_masks(mask_set)
    if mask_set.mode == "channel":
        for module, name in dict.fromkeys(mask_set.gates):
            if parametrize.is_parametrized(module, name):
                parametrize.remove_parametrizations(module, name, leave_parametrized=how == "zero")
        mask_set.gates.clear()
        return masks
    for name, layer in mask_set.layers.items():
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        if how == "zero":
            with torch.no_grad():
                layer.weight.mul_(masks[name])
        elif how == "prune":
            prune.custom_from_mask(layer, "weight", masks[name])
    return masks
