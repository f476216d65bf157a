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
from harp_plugin.registry import describe, hookimpl
from harp_plugin.schedulers.gamma import IncrementalGamma


@hookimpl
def harp_importances() -> dict:
    return {
        "magnitude": describe(tp.importance.GroupMagnitudeImportance,
                              "Torch-Pruning's group L2 weight magnitude (coupled layers scored together)."),
        "l1": describe(partial(tp.importance.GroupMagnitudeImportance, p=1),
                       "Torch-Pruning's group L1 weight magnitude."),
        "bn-scale": describe(tp.importance.BNScaleImportance, "Torch-Pruning's |BatchNorm scale| per channel (network slimming)."),
        "lamp": describe(tp.importance.LAMPImportance, "Torch-Pruning's LAMP: magnitude rescaled by the layer's larger weights."),
        "fpgm": describe(tp.importance.FPGMImportance, "Torch-Pruning's FPGM: filters nearest the geometric median go first."),
        "taylor": describe(tp.importance.GroupTaylorImportance,
                           "Torch-Pruning's first-order Taylor |w * dL/dw| on the clean loss (needs backward)."),
        "hessian": HessianImportance,
        "random": describe(tp.importance.RandomImportance, "Random scores: the floor any criterion must beat."),
        "harp": describe(partial(HarpImportance, method="harp"),
                         "HARP: learned scores and per-layer rates under a global budget (Zhao & Wressnegger 2023)."),
        "hydra": describe(partial(HarpImportance, method="hydra"),
                          "HYDRA: learned scores, one uniform rate in every layer (Sehwag et al. 2020)."),
        "lwm": describe(partial(HarpImportance, method="lwm"),
                        "LWM: per-layer weight magnitude at one uniform rate (HYDRA's baseline)."),
        "adv-taylor": describe(adversarial_taylor,
                               "Taylor |w * dL/dw| on the adversarial loss, summed over a few PGD batches."),
        "smoothness": KernelSmoothnessImportance,
    }


def adversarial_taylor(batches: int = 4) -> AdversarialTaylorImportance:
    """Adversarial Taylor with Torch-Pruning's Taylor defaults. A named signature, because the
    main job passes a ``**kwargs`` factory every option it has (target_kept, gamma, ...)."""
    return AdversarialTaylorImportance(batches=batches)


@hookimpl
def harp_schedulers() -> dict:
    return {"harp-gamma": IncrementalGamma}
