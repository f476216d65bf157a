"""Schedulers of pruning penalties and ratios."""
from harp_plugin.schedulers.gamma import IncrementalGamma

__all__ = ["IncrementalGamma"]
