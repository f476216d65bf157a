"""HARP's "step-wise incremental" weight γ of the compression loss (methods.md §1)."""
from __future__ import annotations

import math


class IncrementalGamma:
    """γ = (p + 1)·γ₀ after p completed periods, frozen once round(L_c, 4) == 0.

    A period is one epoch by default; ``period=0.25`` raises γ four times per epoch, so a
    short run reaches its target early. Robustness first, then the target, then balance.
    """

    def __init__(self, gamma0: float = 0.01, period: float = 1.0) -> None:
        if not (gamma0 >= 0 and math.isfinite(gamma0)):
            raise ValueError(f"gamma0 must be a finite number >= 0, got {gamma0}")
        if not (period > 0 and math.isfinite(period)):
            raise ValueError(f"period must be a positive number of epochs, got {period}")
        self.gamma0 = gamma0
        self.period = period
        self.periods_done = 0
        self.frozen = False

    @property
    def gamma(self) -> float:
        return (self.periods_done + 1) * self.gamma0

    def period_batches(self, batches_per_epoch: int) -> int:
        """Optimiser steps per period (at least one)."""
        return max(1, round(self.period * batches_per_epoch))

    def end_period(self, compression_loss: float) -> None:
        """Freeze γ if the target is reached, otherwise raise it by γ₀."""
        if self.frozen:
            return
        if round(compression_loss, 4) == 0.0:
            self.frozen = True
        else:
            self.periods_done += 1

