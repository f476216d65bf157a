"""Bound operators, one file per operator family, and the map from traced calls to them."""
from harp_plugin.bounds.operators.base import AffineOp, BoundOp, Interval, RelaxedOp
from harp_plugin.bounds.operators.op_map import register_layer, supported_operations

__all__ = ["AffineOp", "BoundOp", "Interval", "RelaxedOp", "register_layer", "supported_operations"]
