"""Every registered structured criterion, pruned to one budget the same way.

A criterion is a registered importance (channels removed by ``tp.MetaPruner`` through
:func:`remove_channels`, which fits or feeds whatever the importance needs) or a registered
transform (which rebuilds layers itself). Both are built from the same bag of options, each
taking the ones its factory names; nothing here depends on a criterion's name.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.importance.channels import remove_channels
from harp_plugin.models.validation import final_classifier
from harp_plugin.pipeline.run import call_with_supported
from harp_plugin.registry import ComponentRegistry, UnknownComponentError

CRITERION_KINDS: tuple[str, ...] = ("importances", "transforms")
_BISECTION_STEPS = 12


@dataclass(frozen=True)
class Criterion:
    """A registered name and the kind of component it is."""

    name: str
    kind: str


def registered_criteria(registry: ComponentRegistry, names: tuple[str, ...] = ()) -> list[Criterion]:
    """The criteria asked for (all registered ones if none), in a stable order."""
    table = {name: Criterion(name, kind) for kind in CRITERION_KINDS for name in registry.names(kind)}
    if not names:
        return list(table.values())
    chosen = []
    for name in names:
        key = name.strip().lower().replace("_", "-")
        if key not in table:
            raise UnknownComponentError(f"unknown criterion {name!r}; registered: {', '.join(table)}")
        chosen.append(table[key])
    return chosen


@dataclass(frozen=True)
class Budget:
    """Keep ``keep`` of the model's ``unit`` (channels per layer, or parameters / MACs in total)."""

    unit: str
    keep: float

    @property
    def label(self) -> str:
        return f"{self.keep:.0%} {self.unit}"


def model_cost(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Parameters and MACs of ``model`` on one example."""
    macs, parameters = tp.utils.count_ops_and_params(model, example[:1])
    return {"parameters": float(parameters), "macs": float(macs)}


@dataclass
class PruneContext:
    """What criteria may need (``options`` for factories, ``remove_options`` for
    :func:`remove_channels`: data, loss, score-training settings) and the uniform ratio of
    each budget, found once since it does not depend on the criterion."""

    example: torch.Tensor
    options: dict[str, Any]
    remove_options: dict[str, Any]
    ratios: dict[Budget, float] = field(default_factory=dict)


def prune_to_budget(
    registry: ComponentRegistry, criterion: Criterion, model: nn.Module, budget: Budget, context: PruneContext,
) -> None:
    """Prune ``model`` in place with ``criterion`` so that it keeps ``budget``.

    Importances prune every layer by one ratio (HARP-like importances bring their own
    per-layer ratios); for a parameter or MAC budget the ratio is found by bisection on
    copies pruned at random, since the kept structure depends on the ratio alone. Transforms
    are bisected on their kept fraction with the transform itself.
    """
    factory = registry.get(criterion.kind, criterion.name)
    options = dict(context.options, target_kept=budget.keep, model=model)
    if criterion.kind == "transforms":
        transform = call_with_supported(factory, options)
        kept = budget.keep if budget.unit == "channels" else _solve(
            lambda k: _transformed(model, transform, k, context.example), model, budget, context.example,
            limit=1e-3, other_end=1.0, what=f"transform {criterion.name!r}",
        )
        transform(model, kept, context.example)
        return
    importance = call_with_supported(factory, options)
    if budget.unit == "channels":
        ratio = 1.0 - budget.keep
    elif budget in context.ratios:
        ratio = context.ratios[budget]
    else:
        ratio = context.ratios[budget] = uniform_ratio(model, budget, context.example)
    remove_channels(model, importance, ratio, context.example, **context.remove_options)


def uniform_ratio(model: nn.Module, budget: Budget, example: torch.Tensor) -> float:
    """The per-layer channel ratio at which ``model`` keeps ``budget`` of its parameters/MACs."""
    def pruned(ratio: float) -> nn.Module:
        probe = copy.deepcopy(model)
        if ratio > 0:
            with torch.random.fork_rng(devices=[]):
                remove_channels(probe, tp.importance.RandomImportance(), ratio, example)
        return probe

    return _solve(pruned, model, budget, example, limit=_largest_ratio(model), other_end=0.0,
                  what=f"channel pruning (classifier {_classifier_name(model)!r} kept whole)")


def _largest_ratio(model: nn.Module) -> float:
    """The largest ratio that leaves every layer a channel: Torch-Pruning skips a layer that a
    ratio would empty, so beyond it the kept share jumps back up."""
    classifier = final_classifier(model)
    widths = [m.weight.shape[0] for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not classifier]
    return (1.0 - 1.0 / min(widths)) * (1.0 - 1e-6) if widths else 0.0


def _transformed(model: nn.Module, transform: Callable[..., Any], kept: float, example: torch.Tensor) -> nn.Module:
    probe = copy.deepcopy(model)
    transform(probe, kept, example)
    return probe


def _solve(
    build: Callable[[float], nn.Module], model: nn.Module, budget: Budget, example: torch.Tensor, *,
    limit: float, other_end: float, what: str,
) -> float:
    """Bisection on a knob between ``limit`` (keeps least) and ``other_end`` (keeps all).
    Returns a knob that meets the budget (keeps at most ``budget.keep``), as close to it as
    the steps allow; a budget not met even at ``limit`` is an error."""
    dense = model_cost(model, example)[budget.unit]

    def kept(knob: float) -> float:
        return model_cost(build(knob), example)[budget.unit] / dense

    reached = kept(limit)
    if reached > budget.keep:
        raise ValueError(
            f"budget {budget.label} cannot be met by {what}: at its limit the model still keeps "
            f"{reached:.1%} of its {budget.unit}"
        )
    meets, misses = limit, other_end
    for _ in range(_BISECTION_STEPS):
        middle = (meets + misses) / 2
        if kept(middle) <= budget.keep:
            meets = middle
        else:
            misses = middle
    return meets


def _classifier_name(model: nn.Module) -> str:
    classifier = final_classifier(model)
    return next(name for name, module in model.named_modules() if module is classifier)
