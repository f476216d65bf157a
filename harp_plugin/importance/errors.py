"""Errors of the learned importances."""
from __future__ import annotations

from harp_plugin.masking.errors import TargetNotReachedError

__all__ = ["NotFittedError", "TargetNotReachedError"]


class NotFittedError(RuntimeError):
    """A learned importance used before ``fit``, or on a model it was not fitted to."""
