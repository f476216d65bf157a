"""Leave the masked-training world: per-layer sparsity report, pruning masks, zeroed weights."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn.utils import parametrize, prune

from harp_plugin.masking.layers import PRUNABLE_TYPES
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
        layer_type = next(t for t in PRUNABLE_TYPES if isinstance(mask_set.layers[name], t))
        kind = f"{layer_type.__name__}/{'channel' if mask.per_channel else 'weight'}"
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
    """Each layer's mask at the weight's full shape (channel masks broadcast)."""
    masks = {}
    for name, mask in mask_set.masks().items():
        weight = mask_set.layers[name].parametrizations.weight.original
        masks[name] = expand_mask(mask.mask, weight).expand_as(weight).detach().clone()
    return masks


def remove_masks(mask_set: MaskSet, how: Literal["dense", "zero", "prune"] = "zero") -> dict[str, torch.Tensor]:
    """Drop the parametrizations; returns the full-shape masks.

    ``zero``: weights become θ ⊙ M (plain tensors, zeros where pruned). ``prune``: θ ⊙ M
    carried as ``torch.nn.utils.prune`` masks (``weight_orig`` + ``weight_mask``), so
    fine-tuning with plain PyTorch keeps pruned weights at zero. ``dense``: back to θ
    (Torch-Pruning then removes channels physically).
    """
    if how not in ("dense", "zero", "prune"):
        raise ValueError(f"how must be 'dense', 'zero' or 'prune', got {how!r}")
    masks = full_masks(mask_set)
    for gate in mask_set.gates:
        gate.remove()
    mask_set.gates.clear()
    for name, layer in mask_set.layers.items():
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        if how == "zero":
            with torch.no_grad():
                layer.weight.mul_(masks[name])
        elif how == "prune":
            prune.custom_from_mask(layer, "weight", masks[name])
    return masks

