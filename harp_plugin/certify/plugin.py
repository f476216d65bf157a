"""Registers the certification components with the plugin registry."""
from __future__ import annotations

from functools import partial

from harp_plugin.certify.accuracy import Certifier
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.robust.certified import CertifiedLoss, StabilityRegulariser
from harp_plugin.schedulers.geometric import GeometricScheduler
from harp_plugin.registry import hookimpl


@hookimpl
def harp_certifiers() -> dict:
    return {name: partial(Certifier, method=name) for name in ("ibp", "crown", "crown-ibp", "alpha-crown")}


@hookimpl
def harp_losses() -> dict:
    return {
        "certified-ibp": partial(CertifiedLoss, method="ibp"),
        "certified-crown-ibp": partial(CertifiedLoss, method="crown-ibp"),
        "nrs": partial(StabilityRegulariser, mode="nrs"),
        "rs": partial(StabilityRegulariser, mode="rs"),
    }


@hookimpl
def harp_importances() -> dict:
    return {"stability": StabilityImportance}


@hookimpl
def harp_schedulers() -> dict:
    return {"geometric": GeometricScheduler}
