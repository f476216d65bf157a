"""harp-plugin: robust pruning (HARP, HYDRA, stability/NRS) as Torch-Pruning plugins.

The main entry points are importable from here (``from harp_plugin import HarpImportance``);
they load on first use, so ``import harp_plugin`` itself stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "HarpImportance": "harp_plugin.importance.harp",
    "AdversarialTaylorImportance": "harp_plugin.importance.taylor",
    "StabilityImportance": "harp_plugin.importance.stability",
    "GeometricScheduler": "harp_plugin.schedulers.geometric",
    "IncrementalGamma": "harp_plugin.schedulers.gamma",
    "attach_masks": "harp_plugin.masking",
    "certified_accuracy": "harp_plugin.certify.accuracy",
    "compute_bounds": "harp_plugin.bounds.engine",
    "CertifiedLoss": "harp_plugin.robust.certified",
    "PGDATLoss": "harp_plugin.robust.losses",
    "TRADESLoss": "harp_plugin.robust.losses",
    "MARTLoss": "harp_plugin.robust.losses",
    "TrainConfig": "harp_plugin.robust.training",
    "fit": "harp_plugin.robust.training",
    "evaluate": "harp_plugin.robust.evaluation",
    "get_registry": "harp_plugin.registry",
    "save_pruned": "harp_plugin.deploy.pruned",
    "load_pruned": "harp_plugin.deploy.pruned",
    "export_model": "harp_plugin.deploy.export",
    "measure_latency": "harp_plugin.deploy.latency",
    "compare_latency": "harp_plugin.deploy.latency",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harp_plugin' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
