"""Former home of the bound operators, now :mod:`harp_plugin.bounds.operators`."""
from harp_plugin.bounds.operators import BoundOp, Interval, register_layer

__all__ = ["BoundOp", "Interval", "register_layer"]
