"""Registers the built-in datasets with the plugin registry."""
from __future__ import annotations

from harp_plugin.data.bundled import digits, mnist5k
from harp_plugin.data.splits import DatasetFactory
from harp_plugin.data.torchvision_sets import SOURCES
from harp_plugin.registry import describe, hookimpl


@hookimpl
def harp_datasets() -> dict[str, DatasetFactory]:
    return {
        "mnist5k": mnist5k,
        "digits": digits,
        **{name: describe(source.load, f"torchvision {name}: needs --data-dir (and --download the first time).")
           for name, source in SOURCES.items()},
    }
