"""Errors raised by the bound engine; each names the node, layer or argument at fault."""
from __future__ import annotations

from typing import Sequence


class NoBoundRule(Exception):
    """Raised by an operator rule that cannot bound this particular call (the reason is its
    message); the graph builder turns it into an :class:`UnsupportedLayerError` naming the node."""


class UnsupportedLayerError(TypeError):
    """A node the engine cannot bound soundly; never skipped silently."""

    def __init__(
        self, name: str, module: object, reason: str = "", *, node: str = "", target: str = "",
        supported: Sequence[str] = (),
    ) -> None:
        self.layer_name = name or "<model>"
        self.layer_type = type(module).__name__
        self.node, self.target = node, target
        where = f"node '{node}' (target {target}) of " if node else ""
        detail = f": {reason}" if reason else ""
        listing = f". Supported operations: {', '.join(supported)}" if supported else ""
        super().__init__(
            f"{where}layer '{self.layer_name}' of type {self.layer_type} is not supported by the "
            f"bound engine{detail}{listing} (docs/certification.md: supported operations, and "
            "harp_plugin.bounds.register_layer to add a layer)"
        )


class UntraceableModelError(TypeError):
    """torch.fx could not trace the model's forward; the message carries the tracer's reason."""


class BoundError(ArithmeticError):
    """Bounds came out NaN or inverted beyond rounding (lower > upper): they cannot be trusted."""
