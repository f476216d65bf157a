"""Training budgets of the models a run compares, counted in epochs over the training split.

A pruned model is trained more than the dense one it came from (retraining between rounds,
score training, fine-tuning). Comparing it with the dense model alone credits pruning with
the effect of that extra training, so every report also carries a dense model trained for
the same number of epochs.
"""
from __future__ import annotations

from dataclasses import dataclass

from harp_plugin.pipeline.config import MASK_METHODS, RunConfig

LABELS = ("dense", "dense, same budget", "pruned")
"""The three models of every report, in table order."""


@dataclass(frozen=True)
class EpochBudget:
    """Epochs of training each model of a run received."""

    dense: int
    pruned: int

    @property
    def extra(self) -> int:
        """Epochs the pruned model got beyond pre-training; the same-budget dense model gets them too."""
        return self.pruned - self.dense

    def by_label(self) -> dict[str, int]:
        return dict(zip(LABELS, (self.dense, self.pruned, self.pruned)))


def epoch_budget(config: RunConfig) -> EpochBudget:
    """Pre-training, then for the pruned model: a fine-tune between geometric rounds, the
    score-training epochs of learned masks (HARP/HYDRA; LWM trains none) and the final fine-tune."""
    learned_masks = config.method in MASK_METHODS and config.method != "lwm"
    pruned = (
        config.pretrain_epochs
        + (config.prune_rounds - 1) * config.finetune_epochs
        + (config.prune_epochs if learned_masks else 0)
        + config.finetune_epochs
    )
    return EpochBudget(dense=config.pretrain_epochs, pruned=pruned)
