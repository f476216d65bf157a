"""Learned score masks for HARP, HYDRA and LWM (methods.md §1–§2).

Typical use::

    masks = attach_masks(model, target_kept=0.01, method="harp")   # 99% sparsity
    loss = adversarial_loss(model, x, y) + gamma * masks.compression_loss()
    ...                                      # train masks.score_parameters() (+ BN)
    masks.freeze()                           # fine-tune θ with fixed masks
    print(format_report(sparsity_report(masks)))
    remove_masks(masks, how="prune")         # or "zero" / "dense"
"""
from harp_plugin.masking.cost import CostModel, LayerCost, conv_linear_flops
from harp_plugin.masking.errors import MaskingError, TargetNotReachedError, UnsupportedLayerError
from harp_plugin.masking.export import LayerSparsity, format_report, full_masks, remove_masks, sparsity_report
from harp_plugin.masking.mask_set import METHODS, MODES, MaskSet, attach_masks, default_kept_init
from harp_plugin.masking.parametrization import FixedRateScoreMask, LearnedRateScoreMask, ScoreMask
from harp_plugin.masking.projection import Projection, project_onto_budget

__all__ = [
    "METHODS",
    "MODES",
    "CostModel",
    "conv_linear_flops",
    "FixedRateScoreMask",
    "LayerCost",
    "LayerSparsity",
    "LearnedRateScoreMask",
    "MaskSet",
    "MaskingError",
    "Projection",
    "ScoreMask",
    "TargetNotReachedError",
    "UnsupportedLayerError",
    "attach_masks",
    "default_kept_init",
    "format_report",
    "project_onto_budget",
    "full_masks",
    "remove_masks",
    "sparsity_report",
]
