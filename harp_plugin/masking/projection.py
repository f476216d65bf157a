"""Guaranteed arrival: HARP's learned rates projected onto the budget (docs/harp.md).

The compression loss only pushes the rates towards the budget; once γ freezes they may sit
above or below it. The projection adds one shared offset δ to every rate logit, a⁽ˡ⁾ =
a_min + (1 − a_min)·σ(r⁽ˡ⁾ + δ), and bisects δ for the largest kept cost within the budget:
a shared shift in logit space keeps the order the rates learned (the layer that learned to
keep more still keeps more). The counts are integers, so the last step of the bisection may
overshoot; the slack left is filled one entry at a time, the highest learned rates first, and
then closed further by exchanges (one entry of a low-rate group given back for cheaper ones).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harp_plugin.masking.errors import MaskingError, TargetNotReachedError
from harp_plugin.masking.mask_set import MaskSet
from harp_plugin.masking.parametrization import LearnedRateScoreMask

_BISECTION_STEPS = 80
_LOGIT_SPAN = 60.0  # σ(±60) is 0 / 1 in float64: beyond it the counts no longer change


@dataclass(frozen=True)
class Projection:
    """Where the projected masks landed, as shares of the dense cost."""

    offset: float
    counts: dict[str, int]
    kept_cost: float
    budget: float

    @property
    def arrival_error(self) -> float:
        """Relative distance from the budget: kept / budget − 1 (≤ 0: never above it)."""
        return self.kept_cost / self.budget - 1.0


def project_onto_budget(masks: MaskSet, budget: float | None = None) -> Projection:
    """Fix every learned mask's count so the network costs at most ``budget`` (default: the
    uniform masks' :meth:`MaskSet.budget_fraction`), as close to it as integer counts allow.

    Raises :class:`TargetNotReachedError` when no counts can meet the budget: the layers no
    mask decides on, plus every mask at its floor a_min, already cost more.
    """
    learned = {name: m for name, m in masks.masks().items() if isinstance(m, LearnedRateScoreMask)}
    if not learned:
        raise MaskingError(f"only HARP's learned rates are projected; these masks are {masks.method!r}")
    budget = masks.budget_fraction() if budget is None else budget
    if not 0.0 < budget <= 1.0:
        raise MaskingError(f"budget must be a share of the dense cost in (0, 1], got {budget}")
    logits = {name: float(m.rate_logit.detach()) for name, m in learned.items()}
    floors = {name: float(m.min_kept) for name, m in learned.items()}
    fixed = {name: int(m.mask.sum()) for name, m in masks.masks().items() if name not in learned}

    def counts_at(offset: float) -> dict[str, int]:
        counts = dict(fixed)
        for name, mask in learned.items():
            kept = floors[name] + (1.0 - floors[name]) * _sigmoid(logits[name] + offset)
            counts[name] = mask.count_for(kept)
        return counts

    def fits(counts: dict[str, int]) -> bool:
        return masks.cost_fraction(counts) <= budget * (1.0 + 1e-12)

    low, high = -_LOGIT_SPAN - max(logits.values()), _LOGIT_SPAN - min(logits.values())
    check_feasible(masks, budget)
    if fits(counts_at(high)):
        low = high
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2.0
        low, high = (middle, high) if fits(counts_at(middle)) else (low, middle)
    counts = _exchange(_fill(counts_at(low), learned, logits, fits), learned, logits, fits, masks.cost_fraction)
    for name, mask in learned.items():
        mask.fix_count(counts[name])
    return Projection(low, counts, masks.cost_fraction(counts), budget)


def _sigmoid(z: float) -> float:
    """σ(z) without overflow for any finite z (learned logits can be far apart)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    return math.exp(z) / (1.0 + math.exp(z))


def check_feasible(masks: MaskSet, budget: float) -> None:
    """Raise :class:`TargetNotReachedError` naming the blocking layers if ``budget`` cannot be met."""
    floor = {name: m.count_for(float(getattr(m, "min_kept", masks.target_kept)))
             for name, m in masks.masks().items()}
    floor_cost = masks.cost_fraction(floor)
    if floor_cost > budget * (1.0 + 1e-12):
        raise TargetNotReachedError(_infeasible_message(masks, budget, floor_cost))


def _fill(counts: dict[str, int], learned: dict, logits: dict[str, float], fits, skip: str | None = None,
          ) -> dict[str, int]:
    """Add single entries, highest learned rate first, round-robin, while the budget holds
    (never to ``skip``)."""
    order = sorted((name for name in learned if name != skip), key=lambda name: -logits[name])
    grown = True
    while grown:
        grown = False
        for name in order:
            if counts[name] < learned[name].units:
                trial = {**counts, name: counts[name] + learned[name].count_step}
                if fits(trial):
                    counts, grown = trial, True
    return counts


def _exchange(counts: dict[str, int], learned: dict, logits: dict[str, float], fits, cost) -> dict[str, int]:
    """Give back one step of a group (lowest learned rate first) when refilling the slack with
    cheaper groups then keeps more: closes what the integer counts leave below the budget."""
    floors = {name: mask.count_for(float(mask.min_kept)) for name, mask in learned.items()}
    improved = True
    while improved:
        improved = False
        for name in sorted(learned, key=lambda n: logits[n]):
            if counts[name] - learned[name].count_step < floors[name]:
                continue
            trial = _fill({**counts, name: counts[name] - learned[name].count_step}, learned, logits, fits,
                          skip=name)
            if cost(trial) > cost(counts):
                counts, improved = trial, True
                break
    return counts


def _infeasible_message(masks: MaskSet, budget: float, floor_cost: float) -> str:
    unit = masks.costs.unit
    dense = masks.costs.cost_value({})
    fixed = sorted(masks.costs.fixed_layers(masks.masks()), key=lambda name: -masks.costs.layers[name].dense)
    fixed_share = sum(masks.costs.layers[name].dense for name in fixed) / dense
    named = ", ".join(f"{name!r} ({masks.costs.layers[name].dense / dense:.1%})" for name in fixed[:5]) or "none"
    return (
        f"the budget keeps {budget:.2%} of the dense {unit}, but the layers no mask decides on cost "
        f"{fixed_share:.2%} on their own ({named}) and with every mask at its floor a_min the network keeps "
        f"{floor_cost:.2%}: no mask setting reaches it; raise the target or prune those layers "
        "(take them out of ignored_layers)"
    )
