"""The sound bound engine: a model's graph of bound operators, and the methods that bound it
(IBP, CROWN, CROWN-IBP) on an ε-ball. See docs/certification.md."""
from harp_plugin.bounds.engine import METHODS, BoundResult, compute_bounds
from harp_plugin.bounds.errors import BoundError, UnsupportedLayerError
from harp_plugin.bounds.graph import Residual, build_graph, register_residual
from harp_plugin.bounds.operators import register_layer
from harp_plugin.bounds.spec import margin_matrix

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
