"""Registers the certification components with the plugin registry."""
from __future__ import annotations

from functools import partial

from harp_plugin.certify.accuracy import Certifier
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.robust.certified import CertifiedLoss, StabilityRegulariser
from harp_plugin.schedulers.geometric import GeometricScheduler
from harp_plugin.registry import describe, hookimpl


@hookimpl
def harp_certifiers() -> dict:
    what = {
        "ibp": "IBP: interval bounds, layer by layer (fastest, loosest).",
        "crown": "CROWN: linear relaxation back-substituted to the input (tightest native method).",
        "crown-ibp": "CROWN-IBP: CROWN for the last layer over IBP intermediate bounds.",
        "alpha-crown": "alpha-CROWN: CROWN with optimised ReLU slopes (needs auto_LiRPA).",
    }
    return {name: describe(partial(Certifier, method=name), text) for name, text in what.items()}


@hookimpl
def harp_losses() -> dict:
    return {
        "certified-ibp": describe(partial(CertifiedLoss, method="ibp"),
                                  "Certified training: cross-entropy on IBP margin lower bounds, with the eps ramp."),
        "certified-crown-ibp": describe(partial(CertifiedLoss, method="crown-ibp"),
                                        "Certified training on mixed CROWN-IBP/IBP margin lower bounds, with the eps ramp."),
        "nrs": describe(partial(StabilityRegulariser, mode="nrs"),
                        "NRS regulariser: -tanh(1 + l*u / gamma_BN^2) per ReLU, pushes unstable ReLUs to stability."),
        "rs": describe(partial(StabilityRegulariser, mode="rs"),
                       "RS regulariser (Xiao et al. 2019): -tanh(1 + l*u) per ReLU, without BN normalisation."),
    }


@hookimpl
def harp_importances() -> dict:
    return {"stability": describe(StabilityImportance,
                                  "Stability (NRS) score per channel from bounds on calibration data (Li et al. 2023).")}


@hookimpl
def harp_schedulers() -> dict:
    return {"geometric": GeometricScheduler}
