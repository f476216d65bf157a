"""What makes short IBP training stable (Shi et al., NeurIPS 2021, "Fast certified robust
training with short warmup"): the IBP initialisation and the two warm-up regularisers.

* IBP initialisation: every Conv/Linear weight but the classifier's drawn from
  N(0, σ²) with σ = √(2π) / fan_in. Then E|w| = 2 / fan_in, so on average an interval's
  radius neither grows nor shrinks through a layer followed by ReLU (about half the inputs
  pass): the certified bounds do not explode at initialisation.
* L_tightness: the mean IBP radius of every ReLU's input, relative to the radius of the
  (normalised) input box, is pushed back under 1/τ: ``relu(τ − r₀/r_l) / τ``.
* L_relu: IBP drives ReLUs to be inactive; the loss balances the active and inactive
  neurons' centres in mean and variance: ``(relu(τ − m) + relu(τ − v)) / τ`` with m, v the
  (symmetrised, ≤ 1) ratios between the two groups.

Both are averaged over ReLU layers and added during the warm-up with weight
``λ·(1 − ε/ε_max)``, so they fade out as ε reaches its target.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harp_plugin.bounds.operators import Interval
from harp_plugin.models.normalization import InputNormalization
from harp_plugin.models.validation import final_classifier

TOLERANCE = 0.5
"""τ of both regularisers (the paper's value)."""


@torch.no_grad()
def ibp_initialise(model: nn.Module, classifier: nn.Module | None = None) -> list[str]:
    """Re-draw every Conv/Linear weight except ``classifier``'s (default: the model's final
    layer) from N(0, (√(2π)/fan_in)²); biases are left as they are. Returns the re-drawn layers.

    Residual networks: the paper also halves weights fed by a residual sum; that is not done
    here, so on such models the bounds may still grow (by at most 2× per block).
    """
    classifier = classifier if classifier is not None else final_classifier(model)
    changed = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or module is classifier:
            continue
        fan_in = module.weight[0].numel()  # in_features, or C_in/groups · kh · kw
        module.weight.normal_(0.0, math.sqrt(2 * math.pi) / fan_in)
        changed.append(name)
    if not changed:
        raise ValueError("ibp_initialise found no Conv2d/Linear layer other than the classifier")
    return changed


def input_radius(model: nn.Module, box: Interval) -> Tensor:
    """Mean radius of the input box as the first weighted layer sees it (after the model's
    leading InputNormalization, when there is one)."""
    low, high = box
    radius = (high - low) / 2
    first = next((m for m in model.modules() if not isinstance(m, nn.Sequential)), None)
    if isinstance(first, InputNormalization):
        radius = radius / first.std
    return radius.mean()


def tightness_loss(preactivations: dict[str, Interval], reference: Tensor, tol: float = TOLERANCE) -> Tensor:
    """Mean over ReLU layers of relu(τ − r₀/r_l)/τ, r_l = mean radius of the layer's input bounds."""
    terms = [
        F.relu(tol - reference / ((high - low) / 2).mean().clamp(min=1e-12)) / tol
        for low, high in preactivations.values()
    ]
    return torch.stack(terms).mean()


def relu_balance_loss(preactivations: dict[str, Interval], tol: float = TOLERANCE) -> Tensor:
    """Mean over ReLU layers of (relu(τ − m) + relu(τ − v))/τ, where m and v compare the mean
    and the spread of the centres of surely active (l > 0) and surely inactive (u < 0)
    neurons; a layer with no active or no inactive neuron contributes nothing (ratio undefined)."""
    terms = []
    for low, high in preactivations.values():
        centre = (low + high) / 2
        active, inactive = (low > 0).to(centre.dtype), (high < 0).to(centre.dtype)
        spread = (centre - centre.mean()) ** 2
        means = _symmetric_ratio((centre * active).mean(), -(centre * inactive).mean())
        variances = _symmetric_ratio((spread * active).sum(), (spread * inactive).sum())
        if means is None or variances is None:
            continue
        terms.append((F.relu(tol - means) + F.relu(tol - variances)) / tol)
    return torch.stack(terms).mean() if terms else low.new_zeros(())


def _symmetric_ratio(a: Tensor, b: Tensor) -> Tensor | None:
    """min(a/b, b/a) in (0, 1]; None when either side is empty (zero)."""
    if a <= 0 or b <= 0:
        return None
    return torch.minimum(a / b, b / a)
