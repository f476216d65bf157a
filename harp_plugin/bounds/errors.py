"""Errors raised by the bound engine; each names the layer or argument at fault."""
from __future__ import annotations


class UnsupportedLayerError(TypeError):
    """A module the engine cannot bound soundly; never skipped silently."""

    def __init__(self, name: str, module: object, reason: str = "") -> None:
        self.layer_name = name or "<model>"
        self.layer_type = type(module).__name__
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"layer '{self.layer_name}' of type {self.layer_type} is not supported by the "
            f"bound engine{detail} (see docs/certification.md for the supported layers and "
            "harp_plugin.bounds.register_layer to add one)"
        )


class BoundError(ArithmeticError):
    """Bounds came out NaN or inverted (lower > upper): the result cannot be trusted."""
