"""Compact CROWN coefficients of convolutional neurons: one local kernel per neuron ("patches").

A neuron of a conv output depends on a window of each earlier feature map only (its receptive
field), so the coefficients of its linear bound are stored as a kernel over that window
instead of a dense map over the whole image. The rows are grouped by output position: the R
rows of position p of sample b (channels of the node, for the lower and the upper bound)
share one window, whose top-left corner at the current level is
``positions[b, p] · stride − padding``, so per-element slopes and intercepts are read once
per window. Every operator that maps windows to windows (convolutions, per-channel affine
maps, relaxed activations, residual sums) moves the kernels backwards itself
(``backward_patches``); the others get the dense form.

Invariant: kernel entries outside the current level's extent are zero. Those entries stand
for the zero padding of a convolution, not for values of the level, so they must not pick up
the level's biases, shifts or relaxation intercepts; :meth:`Patches.moved` re-establishes the
invariant after every composition that widens the window.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

Pair = tuple[int, int]


@dataclass(frozen=True)
class Patches:
    """Coefficients ``kernels`` (B, P, R, C, kh, kw): R linear functions at each of P grid
    positions ``positions`` (B, P, 2) per sample, each on its position's window of a (C, H, W)
    level. Rows are numbered position-major: row ``p · R + r``."""

    kernels: Tensor
    positions: Tensor
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    @classmethod
    def of_positions(cls, picks: Tensor, channels: Tensor, shape: torch.Size, dtype: torch.dtype) -> "Patches":
        """Rows ``+e_c`` then ``−e_c`` for the channels ``channels`` (B, P, R) at the picked
        flat spatial positions ``picks`` (B, P) of a (C, H, W) node: lower bounds of both give
        those neurons' lower and upper bounds."""
        width = shape[2]
        unit = F.one_hot(channels, shape[0]).to(dtype)
        kernels = torch.cat([unit, -unit], dim=2)[..., None, None]
        return cls(kernels, torch.stack([picks // width, picks % width], dim=2))

    def replaced(self, kernels: Tensor) -> "Patches":
        """The same windows with new kernels (an element-wise map applied to the coefficients)."""
        return replace(self, kernels=kernels)

    def negated(self) -> "Patches":
        return self.replaced(-self.kernels)

    def _window_indices(self, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rows (B, P, kh) and columns (B, P, kw) of each window, and whether each lies inside."""
        kh, kw = self.kernels.shape[-2:]
        top = self.positions[..., 0] * self.stride[0] - self.padding[0]
        left = self.positions[..., 1] * self.stride[1] - self.padding[1]
        rows = top.unsqueeze(-1) + torch.arange(kh, device=top.device)
        cols = left.unsqueeze(-1) + torch.arange(kw, device=top.device)
        return rows, cols, (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)

    def _flat_windows(self, height: int, width: int) -> Tensor:
        """Index (B, P, kh, kw) of each window entry in a level padded with one zero row and
        column at the end (index H / W), where every entry outside the level points."""
        rows, cols, inside_rows, inside_cols = self._window_indices(height, width)
        rows = torch.where(inside_rows, rows, height)
        cols = torch.where(inside_cols, cols, width)
        return rows.unsqueeze(-1) * (width + 1) + cols.unsqueeze(-2)

    def moved(self, kernels: Tensor, stride: Pair, padding: Pair, shape: torch.Size) -> "Patches":
        """Kernels composed onto a (C, H, W) level with the new window geometry, with the
        entries outside the level (its zero padding) set to zero."""
        found = Patches(kernels, self.positions, stride, padding)
        _, _, inside_rows, inside_cols = found._window_indices(shape[-2], shape[-1])
        inside = (inside_rows.unsqueeze(-1) & inside_cols.unsqueeze(-2)).view(*self.positions.shape[:2], 1, 1, *kernels.shape[-2:])
        return found.replaced(kernels * inside.to(kernels.dtype))

    def windows(self, values: Tensor) -> Tensor:
        """Each position's window of ``values`` (B, C', H, W): (B, P, 1, C', kh, kw), zero outside."""
        batch, positions = self.positions.shape[:2]
        kh, kw = self.kernels.shape[-2:]
        flat = self._flat_windows(*values.shape[-2:]).view(batch, 1, -1)
        padded = F.pad(values, (0, 1, 0, 1)).flatten(2)
        taken = padded.gather(2, flat.expand(-1, padded.shape[1], -1))
        return taken.view(batch, -1, positions, 1, kh, kw).permute(0, 2, 3, 1, 4, 5).contiguous()

    def row_dot(self, kernels: Tensor, window: Tensor) -> Tensor:
        """Σ kernels · window per row, for kernels shaped like ours and a window shaped like
        :meth:`windows` gives: (B, P·R)."""
        return torch.einsum("bprx,bpx->bpr", kernels.flatten(3), window.flatten(2)).flatten(1)

    def channel_dot(self, values: Tensor) -> Tensor:
        """Σ kernels · values per row for values constant over space (per channel or scalar)."""
        return (self.kernels.sum((-2, -1)) * values.reshape(-1)).sum(-1).flatten(1)

    def larger_than_dense(self, shape: torch.Size) -> bool:
        """Whether a window is larger than the level itself (dense coefficients are then smaller)."""
        kh, kw = self.kernels.shape[-2:]
        return kh * kw > shape[-2] * shape[-1]

    def to_dense(self, shape: torch.Size) -> Tensor:
        """The same coefficients as a dense (B, P·R, C, H, W) tensor."""
        channels, height, width = shape
        batch, positions, rows_count = self.kernels.shape[:3]
        flat = self._flat_windows(height, width).flatten(2).view(batch, positions, 1, 1, -1)
        dense = self.kernels.new_zeros(batch, positions, rows_count, channels, (height + 1) * (width + 1))
        # entries outside the level are zero (the invariant) and land in the dropped row/column
        dense.scatter_(4, flat.expand(-1, -1, rows_count, channels, -1), self.kernels.flatten(4))
        dense = dense.view(batch, positions * rows_count, channels, height + 1, width + 1)
        return dense[..., :height, :width]

    def plus(self, other: "Patches") -> Optional["Patches"]:
        """The sum of two sets of coefficients on the same level and rows, windows aligned to a
        common one; None when their strides differ (then only the dense forms add)."""
        if self.stride != other.stride:
            return None
        padding = tuple(max(a, b) for a, b in zip(self.padding, other.padding))
        extent = [max(s.kernels.shape[-2 + d] + padding[d] - s.padding[d] for s in (self, other)) for d in range(2)]

        def aligned(patches: Patches) -> Tensor:
            top, left = (padding[d] - patches.padding[d] for d in range(2))
            kh, kw = patches.kernels.shape[-2:]
            return F.pad(patches.kernels, (left, extent[1] - kw - left, top, extent[0] - kh - top))

        return Patches(aligned(self) + aligned(other), self.positions, self.stride, padding)

    def concretise(self, box: tuple[Tensor, Tensor]) -> Tensor:
        """min over the box of each row's linear function: (B, P·R)."""
        lower, upper = self.windows(torch.cat(box, dim=1)).chunk(2, dim=3)
        return self.row_dot(self.kernels, upper) + self.row_dot(self.kernels.clamp(min=0), lower - upper)
