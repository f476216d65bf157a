"""The parametrization that makes ``module.weight`` the masked weight θ ⊙ TopK(|s|, a).

Registered with ``torch.nn.utils.parametrize``, so the model's forward code is untouched,
θ lives at ``parametrizations.weight.original`` and the scores, rate and mask travel in
the ordinary ``state_dict``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harp_plugin.masking.ste import MaskedWeight, MaskSTE
from harp_plugin.masking.topk import kept_count, topk_mask


class ScoreMask(nn.Module):
    """Scores s and a kept fraction a; subclasses say whether a is fixed or learned.

    The mask is recomputed only when s or a changed since the last computation (an
    optimiser step bumps their version counters), so every attack step inside one
    optimiser step reuses the same mask. Once frozen, the mask never changes again.
    After :meth:`fix_count` (HARP's projection onto the budget) the mask keeps exactly that
    many entries and only the scores still learn which ones.

    Fine-grained mode registers the mask as the weight's parametrization (``forward``);
    channel mode hands :meth:`current` to the gates of a Torch-Pruning group.
    """

    def __init__(self, scores: torch.Tensor, learn_scores: bool) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores.detach().clone(), requires_grad=learn_scores)
        self.fixed_count: int | None = None
        self.count_step = 1  # counts are multiples of it (attention: whole heads' worth of dims)
        self.frozen = False
        self._seen: tuple[int, ...] | None = None

    @property
    def per_channel(self) -> bool:
        return self.scores.dim() == 1

    @property
    def units(self) -> int:
        """How many entries (weights or channels) the mask decides on."""
        return self.scores.numel()

    def kept_fraction(self) -> torch.Tensor:
        """The layer's kept fraction a as a scalar tensor (differentiable where learned)."""
        raise NotImplementedError

    def count_for(self, kept_fraction: float) -> int:
        """Entries kept at fraction a: k = n − int((1 − a)·n), rounded up to a multiple of ``count_step``."""
        count = kept_count(self.units, kept_fraction)
        return min(self.units, -(-count // self.count_step) * self.count_step)

    def kept_fraction_value(self) -> float:
        """a as a Python float, at full precision for the top-k count."""
        return float(self.kept_fraction().detach())

    def refresh(self, kept_fraction: float | None = None) -> None:
        """Recompute the top-k mask from the current scores and rate (no-op when frozen).

        ``kept_fraction``: a already read on the host (``MaskSet.refresh`` reads every mask's
        in one transfer), so a GPU run does not synchronise once per layer.
        """
        if self.frozen:
            return
        if self.fixed_count is not None:
            count = self.fixed_count
        else:
            count = self.count_for(self.kept_fraction_value() if kept_fraction is None else kept_fraction)
        self.register_buffer("mask", topk_mask(self.scores, count))
        self._seen = self._versions()

    def fix_count(self, count: int) -> None:
        """Keep exactly ``count`` entries from now on; the rate (if any) stops learning."""
        if not 1 <= count <= self.units:
            raise ValueError(f"a mask of {self.units} entries cannot keep {count}")
        self.fixed_count = count
        for parameter in self.parameters(recurse=False):
            if parameter is not self.scores:
                parameter.requires_grad_(False)
        self.refresh()

    def freeze(self) -> None:
        """Fix the mask for good (fine-tuning): scores and rate stop receiving gradients."""
        if self._seen != self._versions():
            self.refresh()
        self._set_frozen(True)

    def current(self) -> torch.Tensor:
        """The 0/1 mask, refreshed if s or a changed, with straight-through gradients."""
        if not self.frozen and self._seen != self._versions():
            self.refresh()
        return MaskSTE.apply(self.scores, self.kept_fraction(), self.mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.frozen and self._seen != self._versions():
            self.refresh()
        return MaskedWeight.apply(weight, self.scores, self.kept_fraction(), self.mask, 0)

    def get_extra_state(self) -> dict[str, Any]:
        return {"frozen": self.frozen, "fixed_count": self.fixed_count}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.fixed_count = state.get("fixed_count")
        self._set_frozen(bool(state["frozen"]))
        self._seen = self._versions()

    def _set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        if frozen:
            for parameter in self.parameters(recurse=False):
                parameter.requires_grad_(False)

    def _versions(self) -> tuple[int, ...]:
        return tuple(parameter._version for parameter in self.parameters(recurse=False))


class FixedRateScoreMask(ScoreMask):
    """HYDRA (trained scores) and LWM (untrained scores): one given kept fraction."""

    def __init__(
        self, scores: torch.Tensor, kept_fraction: float, learn_scores: bool = True, count_step: int = 1
    ) -> None:
        super().__init__(scores, learn_scores)
        self.count_step = count_step
        self.register_buffer("fixed_kept", torch.tensor(kept_fraction, dtype=torch.float64, device=scores.device))
        self.refresh()

    def kept_fraction(self) -> torch.Tensor:
        return self.fixed_kept.to(self.scores.dtype)

    def kept_fraction_value(self) -> float:
        return float(self.fixed_kept)


class LearnedRateScoreMask(ScoreMask):
    """HARP: a = a_min + (1 − a_min)·σ(r) with a learned rate logit r."""

    def __init__(self, scores: torch.Tensor, rate_logit: float, min_kept: float, count_step: int = 1) -> None:
        super().__init__(scores, learn_scores=True)
        self.count_step = count_step
        self.rate_logit = nn.Parameter(torch.tensor(rate_logit, dtype=scores.dtype, device=scores.device))
        self.register_buffer("min_kept", torch.tensor(min_kept, dtype=torch.float64, device=scores.device))
        self.refresh()

    def kept_fraction(self) -> torch.Tensor:
        floor = self.min_kept.to(self.rate_logit.dtype)
        return floor + (1.0 - floor) * torch.sigmoid(self.rate_logit)
