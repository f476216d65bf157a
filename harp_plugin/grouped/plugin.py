"""Registers grouped kernel pruning (SR-GKP) as the transform "grouped-kernel"."""
from __future__ import annotations

from harp_plugin.grouped.transform import GroupedKernelPruning
from harp_plugin.registry import hookimpl


@hookimpl
def harp_transforms() -> dict:
    return {"grouped-kernel": GroupedKernelPruning}
