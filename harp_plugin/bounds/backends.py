"""Choose the bound backend: the built-in engine or auto_LiRPA, same results either way."""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from harp_plugin.bounds.engine import METHODS, BoundResult, check_method, compute_bounds
from harp_plugin.bounds.lirpa import INSTALL_HINT, LIRPA_METHODS, LirpaBounds, lirpa_available

BACKENDS = ("auto", "native", "auto_lirpa")

BoundFunction = Callable[[Tensor, float, Tensor], BoundResult]
"""``bounds(x, eps, y)``: margin bounds of one model, for one method."""


def resolve_backend(backend: str, method: str) -> str:
    """``native`` or ``auto_lirpa``; ``auto`` takes auto_LiRPA when it imports."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        backend = "auto_lirpa" if lirpa_available() else "native"
    if backend == "auto_lirpa" and not lirpa_available():
        raise ImportError(INSTALL_HINT)
    if backend == "native" and method.lower() not in METHODS:
        hint = f" ({method} needs auto_LiRPA: {INSTALL_HINT})" if method.lower() in LIRPA_METHODS else ""
        raise ValueError(f"the native engine supports methods {METHODS}, not {method!r}{hint}")
    return backend


def bound_function(
    model: nn.Module, example: Tensor, method: str, backend: str = "auto",
    lower: float = 0.0, upper: float = 1.0,
) -> BoundFunction:
    """A margin-bound function for ``model`` as it is *now*; build a new one after pruning."""
    resolved = resolve_backend(backend, method)
    method = method.lower()
    if resolved == "auto_lirpa":
        wrapped = LirpaBounds(model, example)
        return lambda x, eps, y: wrapped(x, eps, y, method, lower, upper)
    check_method(method)
    return lambda x, eps, y: compute_bounds(model, x, eps, method=method, y=y, lower=lower, upper=upper)
