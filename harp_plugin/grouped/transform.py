"""Grouped kernel pruning as a model transform: each k×k conv becomes a GroupedKernelConv2d.

One-shot and data-free (SR-GKP): filters are snaked into ``groups`` by kernel smoothness,
every group keeps the same number of input channels chosen by beam search, and the conv is
rebuilt as gather → Conv2d(groups=n) → inverse output permutation. Fine-tune afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn

from harp_plugin.grouped.module import GroupedKernelConv2d
from harp_plugin.grouped.search import BeamSearch, snake_groups
from harp_plugin.importance.smoothness import filter_smoothness, kernel_smoothness


@dataclass(frozen=True)
class LayerPlan:
    """Which filters share each group and which input channels each group keeps."""

    filter_groups: tuple[tuple[int, ...], ...]
    kept_channels: tuple[tuple[int, ...], ...]

    def kernel_mask(self, out_channels: int, in_channels: int) -> Tensor:
        """[C_out, C_in] booleans: True where kernel (filter, input channel) is kept."""
        mask = torch.zeros(out_channels, in_channels, dtype=torch.bool)
        for filters, channels in zip(self.filter_groups, self.kept_channels):
            mask[torch.tensor(filters).unsqueeze(1), torch.tensor(channels).unsqueeze(0)] = True
        return mask


def prunable_convs(model: nn.Module, ignored_layers: Iterable[nn.Module] = ()) -> dict[str, nn.Conv2d]:
    """Ungrouped Conv2d layers with a k×k kernel (k > 1) and more than one input channel."""
    ignored = {id(m) for m in ignored_layers}
    return {
        name: m for name, m in model.named_modules()
        if type(m) is nn.Conv2d and m.groups == 1 and m.in_channels > 1
        and m.kernel_size[0] * m.kernel_size[1] > 1 and id(m) not in ignored
    }


def kept_per_group(in_channels: int, kept_fraction: float) -> int:
    """m = round(kept_fraction · C_in), at least 1."""
    return max(1, min(in_channels, round(kept_fraction * in_channels)))


def plan_layer(conv: nn.Conv2d, kept_fraction: float, groups: int, search: BeamSearch | None = None) -> LayerPlan:
    """The grouping and kept channels of one conv (its weights are only read)."""
    weight = conv.weight.detach().cpu()
    search = search or BeamSearch()
    dealt = snake_groups(filter_smoothness(weight), groups)
    keep = kept_per_group(conv.in_channels, kept_fraction)
    smooth = kernel_smoothness(weight)  # [C_out, C_in]
    kept = []
    for filters in dealt:
        grouped_kernels = weight[filters].transpose(0, 1)  # [C_in, |g|, k, k]
        kept.append(tuple(search.select(grouped_kernels, smooth[filters].sum(0), keep)))
    return LayerPlan(tuple(tuple(f) for f in dealt), tuple(kept))


@torch.no_grad()
def build_grouped(conv: nn.Conv2d, plan: LayerPlan) -> GroupedKernelConv2d:
    """The GroupedKernelConv2d that computes ``conv`` with only the planned kernels."""
    groups, keep = len(plan.filter_groups), len(plan.kept_channels[0])
    order = [f for filters in plan.filter_groups for f in filters]
    grouped = nn.Conv2d(
        groups * keep, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        groups=groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    rows = [conv.weight[list(filters)][:, list(channels)]
            for filters, channels in zip(plan.filter_groups, plan.kept_channels)]
    grouped.weight.copy_(torch.cat(rows))
    if conv.bias is not None:
        grouped.bias.copy_(conv.bias[order])
    in_index = torch.tensor([c for channels in plan.kept_channels for c in channels])
    out_index = torch.empty(conv.out_channels, dtype=torch.long)
    out_index[torch.tensor(order)] = torch.arange(conv.out_channels)
    device = conv.weight.device
    return GroupedKernelConv2d(conv.in_channels, grouped, in_index.to(device), out_index.to(device))


def grouped_kernel_prune(
    model: nn.Module,
    kept_fraction: float,
    groups: int = 8,
    *,
    ignored_layers: Iterable[nn.Module] = (),
    search: BeamSearch | None = None,
) -> dict[str, LayerPlan]:
    """Replace every prunable k×k conv of ``model`` (in place) by its grouped-kernel version.

    Each keeps ``round(kept_fraction · C_in)`` input channels per group, so its parameters
    and MACs shrink to that share of C_in. Returns the plan of each replaced layer by name.
    """
    if not 0.0 < kept_fraction <= 1.0:
        raise ValueError(f"kept_fraction must be in (0, 1], got {kept_fraction}")
    convs = prunable_convs(model, ignored_layers)
    if not convs:
        raise ValueError(
            f"{type(model).__name__} has no Conv2d with a k×k kernel (k > 1), groups=1 and more than one input "
            "channel: grouped kernel pruning has nothing to prune"
        )
    for name, conv in convs.items():
        if conv.out_channels % groups or groups < 1:
            raise ValueError(
                f"layer {name!r} has {conv.out_channels} filters, which {groups} groups do not divide: choose a "
                f"group count that divides every pruned layer's filters, or ignore the layer"
            )
    plans = {name: plan_layer(conv, kept_fraction, groups, search) for name, conv in convs.items()}
    for name, plan in plans.items():
        _replace(model, name, build_grouped(convs[name], plan))
    return plans


@dataclass(frozen=True)
class GroupedKernelPruning:
    """:func:`grouped_kernel_prune` as a registered transform (``transform(model, kept, example)``)."""

    groups: int = 8
    search: BeamSearch = BeamSearch()

    def __call__(self, model: nn.Module, kept_fraction: float, example_inputs: Tensor | None = None) -> dict[str, LayerPlan]:
        return grouped_kernel_prune(model, kept_fraction, self.groups, search=self.search)


def restore_grouped_kernels(model: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Rebuild the GroupedKernelConv2d skeletons a saved state dict describes, in place.

    ``model`` is the architecture before the transform (fresh from its factory); every
    Conv2d whose saved entries hold ``in_index`` is replaced by a module of the saved shapes,
    ready for ``load_state_dict``. Returns the replaced layer names.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        if type(module) is not nn.Conv2d or f"{prefix}in_index" not in state:
            continue
        weight = state[f"{prefix}conv.weight"]
        in_index, out_index = state[f"{prefix}in_index"], state[f"{prefix}out_index"]
        groups = in_index.numel() // weight.shape[1]
        conv = nn.Conv2d(
            in_index.numel(), weight.shape[0], module.kernel_size, module.stride, module.padding, module.dilation,
            groups=groups, bias=f"{prefix}conv.bias" in state, padding_mode=module.padding_mode,
        ).to(device=module.weight.device, dtype=module.weight.dtype)
        device = module.weight.device
        in_channels = int(state.get(f"{prefix}_extra_state", {}).get("in_channels", module.in_channels))
        _replace(model, name, GroupedKernelConv2d(in_channels, conv, in_index.to(device), out_index.to(device)))
        replaced.append(name)
    return replaced


def _replace(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attribute, replacement)
