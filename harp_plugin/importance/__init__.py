"""Channel/weight importance criteria: Torch-Pruning's built-ins plus HARP, HYDRA and LWM."""
from harp_plugin.importance.errors import NotFittedError, TargetNotReachedError
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.phases import PhaseResult, prune_fine_grained, train_masks
from harp_plugin.importance.ratios import reconciled_ratio_dict
from harp_plugin.importance.stability import StabilityImportance

__all__ = [
    "HarpImportance",
    "NotFittedError",
    "PhaseResult",
    "StabilityImportance",
    "TargetNotReachedError",
    "prune_fine_grained",
    "reconciled_ratio_dict",
    "train_masks",
]
