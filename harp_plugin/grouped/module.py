"""The module a grouped-kernel-pruned convolution becomes: gather → grouped conv → reorder.

Group g of the grouped convolution sees only the input channels it kept (``in_index``), so a
conv that keeps m of C_in input channels per group costs m/C_in of the dense one. Outputs are
put back in the original filter order (``out_index``), so the layers after it are unchanged.
Both indices are buffers: the state dict alone describes the structure, and a model rebuilt
from its architecture loads it (:func:`harp_plugin.grouped.restore_grouped_kernels`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class GroupedKernelConv2d(nn.Module):
    """``conv(x[:, in_index])[:, out_index]`` with ``conv`` a Conv2d of ``groups`` groups.

    ``in_index`` lists group 0's kept input channels, then group 1's, ...; ``out_index[o]`` is
    the grouped conv's output position of original filter o. Positions no output selects are
    padding left by later channel pruning (zero weights; see :mod:`harp_plugin.grouped.pruner`).
    """

    def __init__(self, in_channels: int, conv: nn.Conv2d, in_index: Tensor, out_index: Tensor) -> None:
        super().__init__()
        if conv.in_channels != in_index.numel():
            raise ValueError(f"in_index has {in_index.numel()} entries but the grouped conv takes {conv.in_channels}")
        self.in_channels = in_channels
        self.out_channels = int(out_index.numel())
        self.conv = conv
        self.register_buffer("in_index", in_index.to(torch.long))
        self.register_buffer("out_index", out_index.to(torch.long))

    @property
    def groups(self) -> int:
        return self.conv.groups

    @property
    def kept_per_group(self) -> int:
        """Input channels each group convolves (m)."""
        return self.conv.in_channels // self.conv.groups

    def get_extra_state(self) -> dict[str, int]:
        return {"in_channels": self.in_channels}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.in_channels = int(state["in_channels"])
        self.out_channels = int(self.out_index.numel())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"GroupedKernelConv2d expects {self.in_channels} input channels, got {x.shape[1]}: if Torch-Pruning "
                "pruned the layer before it, build the pruner with customized_pruners=grouped_kernel_pruners()"
            )
        return self.conv(x.index_select(1, self.in_index)).index_select(1, self.out_index)

    @torch.no_grad()
    def to_dense(self) -> nn.Conv2d:
        """The equivalent ordinary Conv2d (zero kernels where input channels were pruned).

        It computes the same function; the bound engine certifies through it.
        """
        conv = self.conv
        dense = nn.Conv2d(
            self.in_channels, self.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            bias=conv.bias is not None, padding_mode=conv.padding_mode,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        weight = torch.zeros_like(dense.weight)
        per_group, kept = conv.out_channels // conv.groups, self.kept_per_group
        for out, position in enumerate(self.out_index.tolist()):
            group = position // per_group
            channels = self.in_index[group * kept:(group + 1) * kept]
            weight[out].index_add_(0, channels, conv.weight[position])
        dense.weight.copy_(weight)
        if conv.bias is not None:
            dense.bias.copy_(conv.bias[self.out_index])
        return dense

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, groups={self.groups}, "
                f"kept_per_group={self.kept_per_group}")

