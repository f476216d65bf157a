"""Former home of :class:`GeometricScheduler`, now :mod:`harp_plugin.schedulers.geometric`."""
from harp_plugin.schedulers.geometric import PAPER_RATE, GeometricScheduler, rounds_needed

__all__ = ["PAPER_RATE", "GeometricScheduler", "rounds_needed"]
