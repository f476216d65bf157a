"""Registers the importance criteria: Torch-Pruning's built-ins under short names."""
from __future__ import annotations

import torch_pruning as tp

from harp_plugin.registry import hookimpl


@hookimpl
def harp_importances() -> dict:
    return {
        "magnitude": tp.importance.GroupMagnitudeImportance,
        "taylor": tp.importance.GroupTaylorImportance,
        "random": tp.importance.RandomImportance,
    }
