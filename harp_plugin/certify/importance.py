"""Former home of :class:`StabilityImportance`, now :mod:`harp_plugin.importance.stability`."""
from harp_plugin.importance.stability import StabilityImportance

__all__ = ["StabilityImportance"]
