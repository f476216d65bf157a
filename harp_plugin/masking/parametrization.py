"""The parametrization that makes ``module.weight`` the masked weight θ ⊙ TopK(|s|, a).

Registered with ``torch.nn.utils.parametrize``, so the model's forward code is untouched,
θ lives at ``parametrizations.weight.original`` and the scores, rate and mask travel in
the ordinary ``state_dict``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harp_plugin.masking.ste import MaskedWeight
from harp_plugin.masking.topk import topk_mask


class ScoreMask(nn.Module):
    """Scores s and a kept fraction a; subclasses say whether a is fixed or learned.

    The mask is recomputed only when s or a changed since the last computation (an
    optimiser step bumps their version counters), so every attack step inside one
    optimiser step reuses the same mask. Once frozen, the mask never changes again.

    ``gated`` (channel mode): the mask acts in :meth:`gate`, on the channel's output, and the
    weight stays θ, so a pruned channel's pre-gate output is what switching it back on gives.
    """

    def __init__(self, scores: torch.Tensor, learn_scores: bool) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores.detach().clone(), requires_grad=learn_scores)
        self.frozen = False
        self.gated = False
        self._seen: tuple[int, ...] | None = None

    @property
    def per_channel(self) -> bool:
        return self.scores.dim() == 1

    def kept_fraction(self) -> torch.Tensor:
        """The layer's kept fraction a as a scalar tensor (differentiable where learned)."""
        raise NotImplementedError

    def kept_fraction_value(self) -> float:
        """a as a Python float, at full precision for the top-k count."""
        return float(self.kept_fraction().detach())

    def refresh(self) -> None:
        """Recompute the top-k mask from the current scores and rate (no-op when frozen)."""
        if self.frozen:
            return
        self.register_buffer("mask", topk_mask(self.scores, self.kept_fraction_value()))
        self._seen = self._versions()

    def freeze(self) -> None:
        """Fix the mask for good (fine-tuning): scores and rate stop receiving gradients."""
        if self._seen != self._versions():
            self.refresh()
        self._set_frozen(True)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.frozen and self._seen != self._versions():
            self.refresh()
        if self.gated:
            return weight
        return MaskedWeight.apply(weight, self.scores, self.kept_fraction(), self.mask, 0)

    def gate(self, output: torch.Tensor) -> torch.Tensor:
        """Zero the pruned channels (dim 1) of the layer's output, or of the BN right after it.

        Why: a channel whose weights are zeroed still leaves a train-mode BN as β, and the BN
        divides the gradient reaching those zeroed channels by sqrt(eps) (their variance is 0):
        summed into ∂L/∂a it outweighed γ·∂L_c/∂a ~20-fold and drove every conv rate to 1.
        Gating the channel's final output is what physical removal does, with a gradient
        Σ ∂L/∂out ⊙ out on the natural scale.
        """
        return MaskedWeight.apply(output, self.scores, self.kept_fraction(), self.mask, 1)

    def get_extra_state(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def set_extra_state(self, state: dict[str, Any]) -> None:
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

    def __init__(self, scores: torch.Tensor, kept_fraction: float, learn_scores: bool = True) -> None:
        super().__init__(scores, learn_scores)
        self.register_buffer("fixed_kept", torch.tensor(kept_fraction, dtype=torch.float64, device=scores.device))
        self.refresh()

    def kept_fraction(self) -> torch.Tensor:
        return self.fixed_kept.to(self.scores.dtype)

    def kept_fraction_value(self) -> float:
        return float(self.fixed_kept)


class LearnedRateScoreMask(ScoreMask):
    """HARP: a = a_min + (1 − a_min)·σ(r) with a learned rate logit r."""

    def __init__(self, scores: torch.Tensor, rate_logit: float, min_kept: float) -> None:
        super().__init__(scores, learn_scores=True)
        self.rate_logit = nn.Parameter(torch.tensor(rate_logit, dtype=scores.dtype, device=scores.device))
        self.register_buffer("min_kept", torch.tensor(min_kept, dtype=torch.float64, device=scores.device))
        self.refresh()

    def kept_fraction(self) -> torch.Tensor:
        floor = self.min_kept.to(self.rate_logit.dtype)
        return floor + (1.0 - floor) * torch.sigmoid(self.rate_logit)
