"""Schedulers of pruning penalties and ratios."""
from harp_plugin.schedulers.gamma import IncrementalGamma
from harp_plugin.schedulers.geometric import GeometricScheduler, rounds_needed

__all__ = ["GeometricScheduler", "IncrementalGamma", "rounds_needed"]
