"""Plugs mask training into the shared adversarial training loop (``robust.training.fit``)."""
from __future__ import annotations

import torch
from torch import nn

from harp_plugin.masking.mask_set import MaskSet
from harp_plugin.robust.hooks import EpochRecord, TrainingHooks
from harp_plugin.schedulers.gamma import IncrementalGamma


class MaskTrainingHooks(TrainingHooks):
    """Refresh masks once per optimiser step, add γ·L_c, step γ, gate selection on the target.

    Without a γ schedule (HYDRA, LWM: the kept fraction is fixed at the target) no
    compression loss is added.
    """

    def __init__(self, masks: MaskSet, gamma: IncrementalGamma | None = None) -> None:
        self.masks = masks
        self.gamma = gamma
        self.steps_done = 0
        self.periods_ended = 0
        self.batches_per_epoch = 1

    def on_batch_start(self, model: nn.Module, batch_index: int, batches_per_epoch: int) -> None:
        self.batches_per_epoch = batches_per_epoch
        self._end_periods()
        self.masks.refresh()
        self.steps_done += 1

    def regulariser(self, model: nn.Module) -> torch.Tensor | None:
        if self.gamma is None:
            return None
        return self.gamma.gamma * self.masks.compression_loss()

    def on_epoch_end(self, model: nn.Module, record: EpochRecord) -> None:
        self._end_periods()
        with torch.no_grad():
            record.extras["compression_loss"] = float(self.masks.compression_loss())
        record.extras["kept_fraction"] = self.masks.kept_cost_fraction()
        if self.gamma is not None:
            record.extras["gamma"] = self.gamma.gamma

    def selectable(self) -> bool:
        return self.masks.target_reached()

    def _end_periods(self) -> None:
        """End every γ period whose last optimiser step has been taken."""
        if self.gamma is None:
            return
        due = self.steps_done // self.gamma.period_batches(self.batches_per_epoch)
        while self.periods_ended < due:
            with torch.no_grad():
                self.gamma.end_period(float(self.masks.compression_loss()))
            self.periods_ended += 1
