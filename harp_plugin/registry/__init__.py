"""Plugin registry: components of every kind, registered by name through pluggy hooks.

Third-party packages contribute components through the ``harp_plugin`` entry-point group::

    [project.entry-points.harp_plugin]
    my_plugin = "my_package.plugin"   # a module with @hookimpl functions
"""
from harp_plugin.registry.errors import (
    DuplicateComponentError,
    RegistryError,
    UnknownComponentError,
)
from harp_plugin.registry.hookspecs import KINDS, hookimpl, hookspec
from harp_plugin.registry.manager import (
    ENTRY_POINT_GROUP,
    ComponentRegistry,
    build_registry,
    describe,
    get_registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "ComponentRegistry",
    "DuplicateComponentError",
    "RegistryError",
    "UnknownComponentError",
    "build_registry",
    "describe",
    "get_registry",
    "hookimpl",
    "hookspec",
]
