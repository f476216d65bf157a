"""Errors of the learned importances."""
from __future__ import annotations


class NotFittedError(RuntimeError):
    """A learned importance used before ``fit``, or on a model it was not fitted to."""


class TargetNotReachedError(RuntimeError):
    """Mask training ended without ever meeting the target kept fraction."""
