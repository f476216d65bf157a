"""The sound bound engine: a model's graph of bound operators, and the methods that bound it
(IBP, CROWN, CROWN-IBP) on an ε-ball. See docs/certification.md."""
from harp_plugin.bounds.engine import METHODS, BoundResult, compute_bounds
from harp_plugin.bounds.errors import BoundError, UnsupportedLayerError, UntraceableModelError
from harp_plugin.bounds.graph import Residual, build_graph
from harp_plugin.bounds.numerics import INVERSION_TOLERANCE
from harp_plugin.bounds.precision import exact_float32
from harp_plugin.bounds.operators import register_layer, supported_operations
from harp_plugin.bounds.spec import margin_matrix

__all__ = [
    "INVERSION_TOLERANCE",
    "METHODS",
    "BoundError",
    "BoundResult",
    "Residual",
    "UnsupportedLayerError",
    "UntraceableModelError",
    "build_graph",
    "compute_bounds",
    "exact_float32",
    "margin_matrix",
    "register_layer",
    "exact_float32",
    "supported_operations",
]
