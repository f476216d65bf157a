"""Errors raised by the plugin registry."""
from __future__ import annotations


class RegistryError(ValueError):
    """A component name that is unknown, or registered twice."""


class UnknownComponentError(RegistryError, KeyError):
    """No plugin registered a component of this kind under this name."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class DuplicateComponentError(RegistryError):
    """Two plugins registered the same name for the same kind."""
