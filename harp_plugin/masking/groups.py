"""One channel mask per Torch-Pruning group, applied where the group's channels are produced.

The groups are the ones ``tp.MetaPruner`` itself prunes: the same dependency graph, the same
ignored layers, the same channel grouping (grouped convs, attention heads), the same roots.
So the channels a group's mask switches off during training are exactly the channels
``pruner.step()`` removes, in every member at once (residual adds, concatenations,
depthwise convs, attention).

Where the mask acts (its *layout*) comes from each member's type, not from the activation's
shape: the mask multiplies the parameters that produce a channel along the dimension
Torch-Pruning prunes them on — output rows of Conv/Linear weights and biases (dim 0, whether
the layer runs channels-first or channels-last), the affine weight and bias of a norm layer
(dim 0), an attention block's output projection, an unwrapped parameter (ViT's class token
and position embedding) along its pruning dim. A channel whose producers are all masked is 0
downstream, as if removed. A Conv/Linear followed directly by a BatchNorm of the same group
is masked at the BatchNorm only: a train-mode BN would otherwise see a zero-variance channel
and scale its gradient by 1/sqrt(eps). The masks are parametrizations (``torch.nn.utils.
parametrize``): no forward hook, so a traced bound engine sees plain layers whose
parameters already carry the mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.masking.errors import UnsupportedLayerError
from harp_plugin.masking.layers import LayerTrace, untouched
from harp_plugin.masking.parametrization import ScoreMask

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
_CONV_LINEAR = (nn.modules.conv._ConvNd, nn.Linear)
_ZERO_PRESERVING = (nn.PReLU,)  # f(0) = 0 per channel: masked inputs stay masked, nothing to gate


@dataclass(frozen=True)
class GateSite:
    """A parameter the group's mask multiplies: ``module.<name>`` along ``dim``."""

    module: nn.Module
    name: str
    dim: int
    idxs: tuple[int, ...]  # the member's channel positions ...
    root_idxs: tuple[int, ...]  # ... and where they sit in the group's index space


@dataclass
class ChannelGroup:
    """A Torch-Pruning group: ``channels`` = ``channel_groups`` × ``group_size`` coupled channels."""

    name: str
    root: nn.Module
    channels: int
    channel_groups: int
    sites: list[GateSite] = field(default_factory=list)
    # (module, member channel idxs, root idxs) of every Conv/Linear/attention member
    outputs: list[tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    inputs: list[tuple[nn.Module, tuple[int, ...]]] = field(default_factory=list)

    @property
    def group_size(self) -> int:
        return self.channels // self.channel_groups

    @property
    def count_step(self) -> int:
        """Kept counts must be multiples of this: an attention block's embed dim splits into heads."""
        step = 1
        for module, _, _ in self.outputs:
            if isinstance(module, nn.MultiheadAttention):
                step = math.lcm(step, module.num_heads)
        return step


def find_groups(
    model: nn.Module,
    example_inputs: torch.Tensor,
    ignored_layers: Iterable[nn.Module],
    traces: Mapping[str, LayerTrace],
    **pruner_options: Any,
) -> list[ChannelGroup]:
    """The groups ``tp.MetaPruner(model, example_inputs, ignored_layers=..., **pruner_options)``
    would prune, each with the parameters its mask must multiply.

    Uses the pruner's own group enumeration (Torch-Pruning 1.6 internals, pinned in
    constraints.txt) so that the two can never disagree.
    """
    with untouched(model):
        pruner = tp.MetaPruner(model, example_inputs, importance=tp.importance.RandomImportance(),
                               pruning_ratio=0.0, ignored_layers=list(ignored_layers), **pruner_options)
    graph = pruner.DG
    names = {module: name for name, module in model.named_modules()}
    unwrapped = {id(p.parameters): p.pruning_dim for p in graph.unwrapped_parameters}
    groups = []
    for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        if not pruner._check_pruning_ratio(group):
            continue
        if pruner._is_atten_group(group)[0]:
            group = pruner._downstream_node_as_root_if_attention(group)
            if group is None:
                continue
        root = group[0].dep.target.module
        channels = len(group[0].idxs)
        found = ChannelGroup(names.get(root, group[0].dep.target.name), root, channels,
                             pruner._get_channel_groups(group))
        _collect_members(found, group, graph, names, unwrapped, traces)
        groups.append(found)
    return groups


def _collect_members(
    found: ChannelGroup, group: tp.Group, graph: tp.DependencyGraph, names: Mapping[nn.Module, str],
    unwrapped: Mapping[int, int], traces: Mapping[str, LayerTrace],
) -> None:
    out_members = {item.dep.target.module for item in group.items if graph.is_out_channel_pruning_fn(item.dep.handler)}
    norms_in_group = {names.get(m) for m in out_members if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for item in group.items:
        module, idxs, root_idxs = item.dep.target.module, tuple(item.idxs), tuple(item.root_idxs)
        if not graph.is_out_channel_pruning_fn(item.dep.handler):
            if isinstance(module, (*_CONV_LINEAR, nn.MultiheadAttention)):
                found.inputs.append((module, idxs))
            continue
        if isinstance(module, (*_CONV_LINEAR, nn.MultiheadAttention)):
            found.outputs.append((module, idxs, root_idxs))
        for owner, name, dim in _sites_of(module, names, unwrapped, traces, norms_in_group, graph, found.name):
            found.sites.append(GateSite(owner, name, dim, idxs, root_idxs))


def _sites_of(
    module: Any, names: Mapping[nn.Module, str], unwrapped: Mapping[int, int], traces: Mapping[str, LayerTrace],
    norms_in_group: set, graph: tp.DependencyGraph, group_name: str,
) -> list[tuple[nn.Module, str, int]]:
    """Which parameters produce ``module``'s output channels, and on which dim."""
    if isinstance(module, nn.Parameter):
        return [_owner_of(graph.model, graph._param_to_name[module]) + (unwrapped[id(module)],)]
    if type(module).__module__.startswith("torch_pruning"):
        return []  # Torch-Pruning's own op nodes (add, concat, reshape): no parameters
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed or isinstance(module, nn.Linear):
        trace = traces.get(names.get(module, ""))
        if trace is not None and trace.norm in norms_in_group:
            return []  # masked at its BatchNorm (see the module docstring)
        return [(module, p, 0) for p in ("weight", "bias") if getattr(module, p, None) is not None]
    if isinstance(module, NORM_TYPES):
        if getattr(module, "weight", None) is None or module.weight.dim() != 1:
            raise UnsupportedLayerError(
                f"cannot mask the channels of layer {names.get(module, module)!r} ({type(module).__name__}) in "
                f"group {group_name!r}: it has no per-channel affine weight; construct it with affine weights "
                "or pass it (or its producer) in ignored_layers"
            )
        return [(module, p, 0) for p in ("weight", "bias") if getattr(module, p, None) is not None]
    if isinstance(module, nn.MultiheadAttention):
        projection = module.out_proj
        return [(projection, p, 0) for p in ("weight", "bias") if getattr(projection, p, None) is not None]
    if isinstance(module, nn.Embedding):
        return [(module, "weight", 1)]
    if isinstance(module, _ZERO_PRESERVING):
        return []
    raise UnsupportedLayerError(
        f"cannot tell the channel layout of layer {names.get(module, '?')!r} ({type(module).__name__}) in "
        f"group {group_name!r}: HARP masks Conv/Linear/norm/attention outputs and unwrapped parameters; "
        "pass the layer in ignored_layers to keep its channels"
    )


def _owner_of(model: nn.Module, parameter_name: str) -> tuple[nn.Module, str]:
    owner, _, attribute = parameter_name.rpartition(".")
    return (model.get_submodule(owner) if owner else model), attribute


def group_scores(group: ChannelGroup) -> torch.Tensor:
    """Scaled channel-score init of a group: members' per-channel L1 norms, summed, over the max.

    A member's output channel c is the row c of its weight (dim 0); the group's entry is
    the sum over its Conv/Linear members, averaged over channel groups (the positions that
    share one mask entry), divided by the largest (the intended per-channel L1 of methods.md §1).
    """
    weight = next((m.weight for m, _, _ in group.outputs if isinstance(m, _CONV_LINEAR)), None)
    device = weight.device if weight is not None else None
    total = torch.zeros(group.channels, dtype=torch.float32, device=device)
    for module, idxs, root_idxs in group.outputs:
        rows = _output_rows(module).detach().abs().flatten(1).sum(dim=1).float()
        total.index_add_(0, torch.as_tensor(root_idxs, device=device), rows[torch.as_tensor(idxs, device=device)])
    scores = total.view(group.channel_groups, group.group_size).mean(dim=0)
    if not bool((scores > 0).any()):
        return torch.ones_like(scores)
    return scores / scores.max()


def _output_rows(module: nn.Module) -> torch.Tensor:
    return module.out_proj.weight if isinstance(module, nn.MultiheadAttention) else module.weight


class ChannelGate(nn.Module):
    """Parametrization: a parameter times its group's (straight-through) mask along ``dim``."""

    def __init__(self, mask: ScoreMask, site: GateSite, channel_groups: int, size: int) -> None:
        super().__init__()
        self.mask = mask
        self.dim = site.dim
        self.channel_groups = channel_groups
        self.size = size
        identity = site.idxs == tuple(range(size)) and site.root_idxs == tuple(range(size))
        self.identity = identity and size == channel_groups * mask.units
        device = mask.scores.device
        self.register_buffer("idxs", torch.as_tensor(site.idxs, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("root_idxs", torch.as_tensor(site.root_idxs, dtype=torch.long, device=device),
                             persistent=False)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        group_mask = self.mask.current().to(tensor.dtype).repeat(self.channel_groups)
        if self.identity:
            member = group_mask
        else:
            member = torch.ones(self.size, dtype=tensor.dtype, device=tensor.device)
            member = member.index_copy(0, self.idxs, group_mask[self.root_idxs])
        shape = [1] * tensor.dim()
        shape[self.dim] = -1
        return tensor * member.view(shape)
