"""Attach HARP/HYDRA/LWM masks to a model and drive them as one set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_plugin.masking.cost import CostModel, flop_costs, parameter_costs
from harp_plugin.masking.errors import MaskingError
from harp_plugin.masking.groups import ChannelGate, ChannelGroup, find_groups, group_scores
from harp_plugin.masking.layers import classifier_name, find_prunable, trace_layers
from harp_plugin.masking.parametrization import FixedRateScoreMask, LearnedRateScoreMask, ScoreMask
from harp_plugin.masking.scores import rate_logit, scaled_scores
from harp_plugin.models.device import model_device

Mode = Literal["unstructured", "channel"]
Method = Literal["harp", "hydra", "lwm"]
MODES: tuple[str, ...] = ("unstructured", "channel")
METHODS: tuple[str, ...] = ("harp", "hydra", "lwm")
# Relative slack on the budget when judging the actual masks (docs/harp.md, "target reached").
TARGET_TOLERANCE = 1e-3


@dataclass
class MaskSet:
    """The masks of one model, with the target they are trained towards.

    Fine-grained mode: one mask per layer, named like the layer (``layers``). Channel mode:
    one mask per Torch-Pruning group, named like the group's root layer (``layers`` holds
    the roots, ``groups`` the members); ``gates`` lists the parametrized tensors.
    """

    model: nn.Module
    layers: dict[str, nn.Module]
    target_kept: float
    mode: str
    method: str
    costs: CostModel
    score_masks: dict[str, ScoreMask]
    gates: list[tuple[nn.Module, str]] = field(default_factory=list)
    groups: dict[str, ChannelGroup] = field(default_factory=dict)
    budget: float | None = None  # share of the dense cost; None: what uniform masks at a_t keep
    projection: Any = None  # HARP: the last projection onto the budget (masking.projection)

    def masks(self) -> dict[str, ScoreMask]:
        """Each mask by name (a layer's in fine-grained mode, a group root's in channel mode)."""
        return dict(self.score_masks)

    def refresh(self) -> None:
        """Recompute every top-k mask (once per optimiser step; attack steps reuse it).

        The kept fractions come to the host in one transfer: one synchronisation per step.
        """
        learned = [m for m in self.score_masks.values() if isinstance(m, LearnedRateScoreMask) and not m.frozen]
        if learned:
            with torch.no_grad():
                fractions = torch.stack([m.kept_fraction().to(torch.float64) for m in learned]).tolist()
            for mask, fraction in zip(learned, fractions):
                mask.refresh(fraction)
        for mask in self.score_masks.values():
            if not isinstance(mask, LearnedRateScoreMask):
                mask.refresh()

    def freeze(self) -> None:
        """Fix every mask for fine-tuning: scores and rates stop training."""
        for mask in self.score_masks.values():
            mask.freeze()

    def score_parameters(self) -> list[nn.Parameter]:
        """The trainable scores and rate logits (empty for LWM or once frozen)."""
        return [p for mask in self.score_masks.values() for p in mask.parameters(recurse=False) if p.requires_grad]

    def kept_fractions(self) -> dict[str, torch.Tensor]:
        """Each mask's (learned or fixed) kept fraction a."""
        return {name: mask.kept_fraction() for name, mask in self.score_masks.items()}

    def compression_loss(self) -> torch.Tensor:
        """L_c, differentiable in the rate logits."""
        return self.costs.compression_loss(self.kept_fractions(), self.target_kept)

    def target_reached(self) -> bool:
        """Whether the actual top-k masks cost at most the budget (+ ``TARGET_TOLERANCE``).

        Judged on the masks, not on L_c: the hinge keeps the rates hovering at the boundary,
        so round(L_c, 4) == 0 is met at an epoch end by chance, while the masks, whose
        counts k = n − int((1 − a)·n) round up, can be on either side of it.
        """
        return self.kept_cost_fraction() <= self.budget_fraction() * (1.0 + TARGET_TOLERANCE)

    def kept_counts(self) -> dict[str, int]:
        """How many entries each mask keeps now."""
        return {name: int(mask.mask.sum()) for name, mask in self.score_masks.items()}

    def kept_cost_fraction(self) -> float:
        """Share of the dense cost (parameters or FLOPs) the current masks keep."""
        return self.cost_fraction(self.kept_counts())

    def budget_fraction(self) -> float:
        """Share of the dense cost kept by uniform masks at a_t: HYDRA's and LWM's, and in channel
        mode what ``tp.MetaPruner`` keeps with ``pruning_ratio = 1 − a_t`` (int(n·a_t) per group),
        unless an explicit ``budget`` was set."""
        if self.budget is not None:
            return self.budget
        return self.cost_fraction({name: self.uniform_count(m) for name, m in self.score_masks.items()})

    def uniform_count(self, mask: ScoreMask) -> int:
        """Entries a uniform mask at a_t keeps: top-k's count, or Torch-Pruning's in channel mode."""
        if self.mode == "channel":
            return pruner_count(mask.units, self.target_kept, mask.count_step)
        return mask.count_for(self.target_kept)

    def cost_fraction(self, counts: dict[str, int]) -> float:
        """Share of the dense cost kept when mask ``name`` keeps ``counts[name]`` entries."""
        fractions = {name: counts[name] / mask.units for name, mask in self.score_masks.items()}
        return self.costs.cost_value(fractions) / self.costs.cost_value({})


def pruner_count(units: int, target_kept: float, step: int = 1) -> int:
    """Channels ``tp.MetaPruner`` keeps of ``units`` at ``pruning_ratio = 1 − a_t``: int(n·a_t),
    in whole multiples of ``step``, at least one step."""
    return max(step, int(units * target_kept + 1e-9) // step * step)


def default_kept_init(target_kept: float) -> float:
    """HARP's starting kept fraction: 10·a_t (the paper's 0.1 for 99%), at most halfway to 1."""
    return min(10.0 * target_kept, (1.0 + target_kept) / 2.0)


def attach_masks(
    model: nn.Module,
    target_kept: float,
    *,
    mode: Mode = "unstructured",
    method: Method = "harp",
    kept_init: float | None = None,
    alpha: float = 0.1,
    ignored_layers: Iterable[nn.Module] = (),
    example_inputs: torch.Tensor | None = None,
    pruner_options: dict | None = None,
) -> MaskSet:
    """Parametrize the model with scores (and, for HARP, learned kept fractions).

    ``target_kept`` is the global kept fraction a_t (0.01 for 99% sparsity); HARP learns
    per-mask fractions from ``kept_init`` (default :func:`default_kept_init`) down to no
    less than a_min = ``alpha``·a_t, HYDRA and LWM keep a_t everywhere. Fine-grained mode
    masks the weights of every Conv2d/Linear. Channel mode masks each Torch-Pruning group's
    channels (one mask per group, ``masking.groups``), leaves the classifier whole and counts
    FLOPs, so it needs ``example_inputs``; ``pruner_options`` are the ``tp.MetaPruner``
    options (``num_heads``, ``unwrapped_parameters``, …) the groups must match.
    """
    check_kept_target("target_kept", target_kept)
    _check_fraction("alpha", alpha)
    if mode not in MODES:
        raise MaskingError(f"mode must be one of {MODES}, got {mode!r}")
    if method not in METHODS:
        raise MaskingError(f"method must be one of {METHODS}, got {method!r}")
    min_kept = alpha * target_kept
    kept_init = default_kept_init(target_kept) if kept_init is None else kept_init
    _check_fraction("kept_init", kept_init)
    if kept_init < min_kept:
        raise MaskingError(f"kept_init={kept_init} is below a_min = alpha·target_kept = {min_kept:.4g}")
    layers = find_prunable(model, ignored_layers)
    if mode == "channel":
        return _attach_group_masks(model, ignored_layers, example_inputs, target_kept, method, kept_init, min_kept,
                                   pruner_options or {})
    masks = {}
    for name, layer in layers.items():
        masks[name] = _make_mask(scaled_scores(layer.weight, per_channel=False), method, target_kept, kept_init,
                                 min_kept)
        parametrize.register_parametrization(layer, "weight", masks[name])
    return MaskSet(model, layers, target_kept, mode, method, parameter_costs(layers), masks)


def _attach_group_masks(
    model: nn.Module, ignored_layers: Iterable[nn.Module], example_inputs: torch.Tensor | None,
    target_kept: float, method: str, kept_init: float, min_kept: float, pruner_options: dict,
) -> MaskSet:
    """Channel mode: one mask per Torch-Pruning group, gating every parameter that produces it."""
    if example_inputs is None:
        raise MaskingError("channel mode needs example_inputs to trace FLOPs and find the classifier")
    example_inputs = example_inputs.to(model_device(model))
    traces = trace_layers(model, example_inputs)
    classifier = classifier_name(traces)
    modules = dict(model.named_modules())
    ignored = [*ignored_layers, modules[classifier]]
    groups = {g.name: g for g in find_groups(model, example_inputs, ignored, traces, **pruner_options)}
    if not groups:
        raise MaskingError(
            f"channel mode found no prunable channel group in {type(model).__name__} outside the "
            f"classifier {classifier!r} and ignored_layers"
        )
    costs = flop_costs(modules, traces, groups.values())
    masks, gates = {}, []
    for name, group in groups.items():
        masks[name] = _make_mask(group_scores(group), method, target_kept, kept_init, min_kept, group.count_step)
        if method != "harp":  # exactly what tp.MetaPruner keeps at pruning_ratio = 1 − a_t
            masks[name].fix_count(pruner_count(group.group_size, target_kept, group.count_step))
        for site in group.sites:
            size = getattr(site.module, site.name).shape[site.dim]
            parametrize.register_parametrization(
                site.module, site.name, ChannelGate(masks[name], site, group.channel_groups, size)
            )
            gates.append((site.module, site.name))
    roots = {name: group.root for name, group in groups.items()}
    return MaskSet(model, roots, target_kept, "channel", method, costs, masks, gates, groups)


def _make_mask(
    scores: torch.Tensor, method: str, target_kept: float, kept_init: float, min_kept: float, count_step: int = 1
) -> ScoreMask:
    if method == "harp":
        return LearnedRateScoreMask(scores, rate_logit(kept_init, min_kept), min_kept, count_step)
    return FixedRateScoreMask(scores, target_kept, learn_scores=method == "hydra", count_step=count_step)


def check_kept_target(name: str, value: float) -> None:
    """A target kept share must lie strictly between 0 (nothing kept) and 1 (nothing pruned)."""
    if not 0.0 < value < 1.0:
        raise MaskingError(
            f"{name} must be a kept fraction strictly between 0 and 1 (0.01 = 99% pruned), got {value}: "
            + ("nothing would be kept" if value <= 0 else "nothing would be pruned" if value == 1 else "above 1")
        )


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise MaskingError(f"{name} must be a kept fraction in (0, 1], got {value}")
