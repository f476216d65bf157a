"""An importance whose scores are averaged over ranks before Torch-Pruning ranks channels."""
from __future__ import annotations

from typing import Any

import torch
import torch_pruning as tp

from harp_plugin.distributed.collectives import average_tensor


class RankAveragedImportance(tp.importance.Importance):
    """Wraps any importance: every rank gets the mean of all ranks' scores for each group.

    Torch-Pruning asks for the groups in the same order on every rank (the structure is the
    same), so the collectives line up; identical scores then mean identical removals, even
    for criteria that are random (``random``) or see each rank's own data (Taylor).
    """

    def __init__(self, importance: tp.importance.Importance) -> None:
        self.importance = importance

    @torch.no_grad()
    def __call__(self, group: tp.Group, **kwargs: Any) -> torch.Tensor | None:
        scores = self.importance(group, **kwargs)
        return None if scores is None else average_tensor(scores)
