"""Certified robustness of a model: certified accuracy, the ``Certifier`` the registry builds,
and weight rewinding for iterative stability pruning. The engine lives in
:mod:`harp_plugin.bounds`; its public names are re-exported here for existing imports."""
from harp_plugin import bounds as _engine
from harp_plugin.bounds import *  # noqa: F401,F403 -- the engine's public names, unchanged

__all__ = list(_engine.__all__)
