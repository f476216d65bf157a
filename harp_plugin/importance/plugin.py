"""Registers the importance criteria and the HARP γ schedule.

Torch-Pruning's built-ins go by short names; "harp", "hydra" and "lwm" build a
:class:`HarpImportance` (``factory(target_kept, ...)``, to be fitted before pruning) and
"adv-taylor" Torch-Pruning's Taylor criterion on the adversarial loss.
"""
from __future__ import annotations

from functools import partial

import torch_pruning as tp

from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.taylor import AdversarialTaylorImportance
from harp_plugin.registry import hookimpl
from harp_plugin.schedulers.gamma import IncrementalGamma


@hookimpl
def harp_importances() -> dict:
    return {
        "magnitude": tp.importance.GroupMagnitudeImportance,
        "taylor": tp.importance.GroupTaylorImportance,
        "random": tp.importance.RandomImportance,
        "harp": partial(HarpImportance, method="harp"),
        "hydra": partial(HarpImportance, method="hydra"),
        "lwm": partial(HarpImportance, method="lwm"),
        "adv-taylor": AdversarialTaylorImportance,
    }


@hookimpl
def harp_schedulers() -> dict:
    return {"harp-gamma": IncrementalGamma}
