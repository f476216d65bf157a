"""A pruning criterion of the plugin's own: the variance of each output channel's weights."""
from __future__ import annotations

import torch
import torch_pruning as tp

OUT_CHANNEL_HANDLERS = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)


class ChannelVarianceImportance(tp.importance.Importance):
    """Channels whose weights vary least carry least information: they go first."""

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> torch.Tensor:
        scores = torch.zeros(len(group[0].idxs))
        for item in group.items:
            if item.dep.handler not in OUT_CHANNEL_HANDLERS:
                continue
            weight = item.dep.target.module.weight
            rows = weight[torch.as_tensor(item.idxs, device=weight.device)].flatten(1)
            scores.index_add_(0, torch.as_tensor(item.root_idxs), rows.var(dim=1).cpu().to(scores.dtype))
        return scores
