"""Former home of the certified training losses, now :mod:`harp_plugin.robust.certified`."""
from harp_plugin.robust.certified import (
    CertifiedLoss,
    EpsilonRampHooks,
    EpsilonSchedule,
    StabilityRegulariser,
    margin_cross_entropy,
    ramp_fraction,
    stability_penalty,
)

__all__ = [
    "CertifiedLoss",
    "EpsilonRampHooks",
    "EpsilonSchedule",
    "StabilityRegulariser",
    "margin_cross_entropy",
    "ramp_fraction",
    "stability_penalty",
]
