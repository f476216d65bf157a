"""The module the `harp_plugin` entry point names: one hook per kind of component it adds."""
from __future__ import annotations

from harp_plugin.registry import describe, hookimpl

from harp_example_plugin.importance import ChannelVarianceImportance


@hookimpl
def harp_importances() -> dict:
    return {
        "channel-variance": describe(
            ChannelVarianceImportance, "Example plugin: variance of each output channel's weights."
        ),
    }
