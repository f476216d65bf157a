"""A warning when a split is too small for its numbers to mean anything.

Three training images of ten classes train nothing and report chance accuracy as if it were a
result; the warning names the minimum so the fix (a larger ``max_train``/``max_eval``) is clear.
"""
from __future__ import annotations

import warnings

from harp_plugin.data.splits import DataSplits

MIN_TRAIN_PER_CLASS = 10
"""Below ten training images per class a short run cannot learn beyond chance."""
MIN_EVAL_PER_CLASS = 1
"""Below one evaluation image per class some classes are never tested."""


class SmallDatasetWarning(UserWarning):
    """A split is smaller than the minimum for meaningful accuracies."""


def warn_if_small(splits: DataSplits) -> None:
    """Warn (:class:`SmallDatasetWarning`) for each split below its minimum size."""
    classes = splits.num_classes
    checks = (
        ("training", len(splits.train), MIN_TRAIN_PER_CLASS, "max_train"),
        ("validation", len(splits.val), MIN_EVAL_PER_CLASS, "max_eval"),
        ("test", len(splits.test), MIN_EVAL_PER_CLASS, "max_eval"),
    )
    for split, size, per_class, cap in checks:
        minimum = per_class * classes
        if size < minimum:
            warnings.warn(
                f"dataset {splits.name!r}: the {split} split has {size} images, below the minimum of "
                f"{minimum} ({per_class} per class, {classes} classes); accuracies will be near chance "
                f"or not measured for every class: raise {cap} (--{cap.replace('_', '-')}) to at least {minimum}",
                SmallDatasetWarning,
                stacklevel=3,
            )
