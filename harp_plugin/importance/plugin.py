"""Registers the importance criteria and the HARP γ schedule.

Torch-Pruning's built-ins go by short names ("magnitude" is the L2 norm, "l1" the L1 norm;
"hessian" — Torch-Pruning's, with its accumulation fixed — and "taylor" need gradients,
collected by ``remove_channels``); "harp", "hydra" and
"lwm" build a :class:`HarpImportance` (``factory(target_kept, ...)``, to be fitted before
pruning), "adv-taylor" Torch-Pruning's Taylor criterion on the adversarial loss and
"smoothness" the kernel-smoothness criterion of SR-GKP.
"""
from __future__ import annotations

from functools import partial

import torch_pruning as tp

from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.smoothness import KernelSmoothnessImportance
from harp_plugin.importance.taylor import AdversarialTaylorImportance, HessianImportance
from harp_plugin.registry import hookimpl
from harp_plugin.schedulers.gamma import IncrementalGamma


@hookimpl
def harp_importances() -> dict:
    return {
        "magnitude": tp.importance.GroupMagnitudeImportance,
        "l1": partial(tp.importance.GroupMagnitudeImportance, p=1),
        "bn-scale": tp.importance.BNScaleImportance,
        "lamp": tp.importance.LAMPImportance,
        "fpgm": tp.importance.FPGMImportance,
        "taylor": tp.importance.GroupTaylorImportance,
        "hessian": HessianImportance,
        "random": tp.importance.RandomImportance,
        "harp": partial(HarpImportance, method="harp"),
        "hydra": partial(HarpImportance, method="hydra"),
        "lwm": partial(HarpImportance, method="lwm"),
        "adv-taylor": adversarial_taylor,
        "smoothness": KernelSmoothnessImportance,
    }


def adversarial_taylor(batches: int = 4) -> AdversarialTaylorImportance:
    """Adversarial Taylor with Torch-Pruning's Taylor defaults. A named signature, because the
    main job passes a ``**kwargs`` factory every option it has (target_kept, gamma, ...)."""
    return AdversarialTaylorImportance(batches=batches)


@hookimpl
def harp_schedulers() -> dict:
    return {"harp-gamma": IncrementalGamma}
