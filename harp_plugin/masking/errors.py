"""Errors of the masking package (all ValueErrors: they describe bad input)."""
from __future__ import annotations


class MaskingError(ValueError):
    """A model, layer or setting that masks cannot be attached to or used with."""


class UnsupportedLayerError(MaskingError):
    """A weight-carrying layer type HARP cannot mask; the message names the layer."""


class TargetNotReachedError(RuntimeError):
    """A budget no mask setting can meet: the layers HARP cannot prune already exceed it."""
