"""Certified robustness: a sound bound engine (IBP, CROWN), certified accuracy and training,
and stability-based pruning. See docs/certification.md."""
from harp_plugin.certify.bounds import METHODS, BoundResult, compute_bounds
from harp_plugin.certify.errors import BoundError, UnsupportedLayerError
from harp_plugin.certify.graph import Residual, build_graph, register_residual
from harp_plugin.certify.layers import register_layer
from harp_plugin.certify.spec import margin_matrix

__all__ = [
    "METHODS",
    "BoundError",
    "BoundResult",
    "Residual",
    "UnsupportedLayerError",
    "build_graph",
    "compute_bounds",
    "margin_matrix",
    "register_layer",
    "register_residual",
]
