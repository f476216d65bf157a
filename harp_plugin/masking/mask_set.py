"""Attach HARP/HYDRA/LWM masks to a model and drive them as one set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from harp_plugin.masking.cost import CostModel, flop_costs, parameter_costs
from harp_plugin.masking.errors import MaskingError
from harp_plugin.masking.layers import LayerTrace, classifier_name, find_prunable, trace_layers
from harp_plugin.masking.parametrization import FixedRateScoreMask, LearnedRateScoreMask, ScoreMask
from harp_plugin.masking.scores import rate_logit, scaled_scores
from harp_plugin.masking.topk import kept_count
from harp_plugin.models.device import model_device

Mode = Literal["unstructured", "channel"]
Method = Literal["harp", "hydra", "lwm"]
MODES: tuple[str, ...] = ("unstructured", "channel")
METHODS: tuple[str, ...] = ("harp", "hydra", "lwm")
# Relative slack on the budget when judging the actual masks (docs/harp.md, "target reached").
TARGET_TOLERANCE = 1e-3


@dataclass
class MaskSet:
    """The masked layers of one model, with the target they are trained towards."""

    model: nn.Module
    layers: dict[str, nn.Module]
    target_kept: float
    mode: str
    method: str
    costs: CostModel
    gates: list[RemovableHandle] = field(default_factory=list)  # channel mode: output gates
    gated_outputs: dict[str, str] = field(default_factory=dict)  # channel mode: layer → module it gates

    def masks(self) -> dict[str, ScoreMask]:
        """Each layer's parametrization, by layer name."""
        return {name: layer.parametrizations.weight[0] for name, layer in self.layers.items()}

    def refresh(self) -> None:
        """Recompute every top-k mask (once per optimiser step; attack steps reuse it)."""
        for mask in self.masks().values():
            mask.refresh()

    def freeze(self) -> None:
        """Fix every mask for fine-tuning: scores and rates stop training."""
        for mask in self.masks().values():
            mask.freeze()

    def score_parameters(self) -> list[nn.Parameter]:
        """The trainable scores and rate logits (empty for LWM or once frozen)."""
        return [p for mask in self.masks().values() for p in mask.parameters(recurse=False) if p.requires_grad]

    def kept_fractions(self) -> dict[str, torch.Tensor]:
        """Each layer's (learned or fixed) kept fraction a⁽ˡ⁾."""
        return {name: mask.kept_fraction() for name, mask in self.masks().items()}

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

    def kept_cost_fraction(self) -> float:
        """Share of the dense cost (parameters or FLOPs) the current masks keep."""
        actual = {name: mask.mask.float().mean() for name, mask in self.masks().items()}
        with torch.no_grad():
            return float(self.costs.cost(actual) / self.costs.cost({}))

    def budget_fraction(self) -> float:
        """Share of the dense cost kept by uniform top-k masks at a_t (HYDRA's and LWM's)."""
        uniform = {
            name: kept_count(mask.mask.numel(), self.target_kept) / mask.mask.numel()
            for name, mask in self.masks().items()
        }
        with torch.no_grad():
            return float(self.costs.cost(uniform) / self.costs.cost({}))


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
) -> MaskSet:
    """Parametrize every prunable Conv2d/Linear with scores (and, for HARP, a rate).

    ``target_kept`` is the global kept fraction a_t (0.01 for 99% sparsity); HARP learns
    per-layer fractions from ``kept_init`` (default :func:`default_kept_init`) down to no
    less than a_min = ``alpha``·a_t, HYDRA and LWM keep a_t in every layer. Channel mode
    masks output channels, leaves the classifier whole and counts FLOPs, so it needs
    ``example_inputs``.
    """
    _check_fraction("target_kept", target_kept)
    _check_fraction("alpha", alpha)
    if mode not in MODES:
        raise MaskingError(f"mode must be one of {MODES}, got {mode!r}")
    if method not in METHODS:
        raise MaskingError(f"method must be one of {METHODS}, got {method!r}")
    min_kept = alpha * target_kept
    kept_init = default_kept_init(target_kept) if kept_init is None else kept_init
    _check_fraction("kept_init", kept_init)
    if kept_init < min_kept:
        raise MaskingError(f"kept_init={kept_init} is below a_min = alpha·target_kept = {min_kept}")
    layers = find_prunable(model, ignored_layers)
    if example_inputs is not None:
        example_inputs = example_inputs.to(model_device(model))
    traces = _channel_traces(model, layers, example_inputs) if mode == "channel" else {}
    costs = flop_costs(model, example_inputs, traces) if traces else parameter_costs(layers)
    gates, gated_outputs = [], {}
    for name, layer in layers.items():
        scores = scaled_scores(layer.weight, per_channel=mode == "channel")
        mask = _make_mask(scores, method, target_kept, kept_init, min_kept)
        parametrize.register_parametrization(layer, "weight", mask)
        if mode == "channel":
            trace = traces.get(name)
            gated_outputs[name] = trace.norm if trace is not None and trace.norm else name
            gates.append(_attach_gate(model.get_submodule(gated_outputs[name]), mask))
    return MaskSet(model, layers, target_kept, mode, method, costs, gates, gated_outputs)


def _channel_traces(
    model: nn.Module, layers: dict[str, nn.Module], example_inputs: torch.Tensor | None
) -> dict[str, LayerTrace]:
    """Trace FLOPs and BNs for channel mode and drop the classifier from ``layers``."""
    if example_inputs is None:
        raise MaskingError("channel mode needs example_inputs to trace FLOPs and find the classifier")
    traces = trace_layers(model, example_inputs)
    classifier = classifier_name(traces)
    layers.pop(classifier, None)
    if not layers:
        raise MaskingError(f"channel mode found no prunable layer besides the classifier {classifier!r}")
    return traces


def _attach_gate(end: nn.Module, mask: ScoreMask) -> RemovableHandle:
    """Gate the channel's final output: that of the BN right after the layer, else the layer's."""
    mask.gated = True
    return end.register_forward_hook(lambda _module, _inputs, output: mask.gate(output))


def _make_mask(scores: torch.Tensor, method: str, target_kept: float, kept_init: float, min_kept: float) -> ScoreMask:
    if method == "harp":
        return LearnedRateScoreMask(scores, rate_logit(kept_init, min_kept), min_kept)
    return FixedRateScoreMask(scores, target_kept, learn_scores=method == "hydra")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise MaskingError(f"{name} must be a kept fraction in (0, 1], got {value}")

