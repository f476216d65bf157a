"""Geometric iterative pruning: remove a fixed fraction of the *remaining* channels per round."""
from __future__ import annotations

import math
from typing import Optional

PAPER_RATE = 0.11
"""Structured rounds of the stability-pruning paper: 11% of the remaining channels."""


class GeometricScheduler:
    """A Torch-Pruning ``iterative_pruning_ratio_scheduler``: ``(pruning_ratio, steps) -> ratios``.

    Step k has removed 1 − (1 − rate)^k of the original channels, capped at ``pruning_ratio``;
    the last step always reaches ``pruning_ratio``. ``rate=None`` picks the rate that reaches
    it exactly in ``steps`` rounds. :func:`rounds_needed` says how many rounds a rate takes.
    """

    def __init__(self, rate: Optional[float] = PAPER_RATE) -> None:
        if rate is not None and not 0 < rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        self.rate = rate

    def __call__(self, pruning_ratio: float, steps: int) -> list[float]:
        if not 0 <= pruning_ratio < 1:
            raise ValueError(f"pruning_ratio must be in [0, 1), got {pruning_ratio}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        rate = self.rate if self.rate is not None else 1 - (1 - pruning_ratio) ** (1 / steps)
        ratios = [min(pruning_ratio, 1 - (1 - rate) ** k) for k in range(steps + 1)]
        ratios[-1] = pruning_ratio
        return ratios


def rounds_needed(pruning_ratio: float, rate: float = PAPER_RATE) -> int:
    """Rounds of ``rate`` (of the remaining channels) needed to remove ``pruning_ratio`` in all."""
    if not 0 <= pruning_ratio < 1 or not 0 < rate < 1:
        raise ValueError(f"need 0 <= pruning_ratio < 1 and 0 < rate < 1, got {pruning_ratio}, {rate}")
    return max(1, math.ceil(math.log(1 - pruning_ratio) / math.log(1 - rate) - 1e-9))
