"""In-memory image datasets that keep the stored dtype and scale to [0, 1] on access."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

STATS_CHUNK = 4096


class ImageTensorDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``(image, label)`` pairs from an ``(N, C, H, W)`` tensor, images divided by ``scale``.

    The images stay in their stored dtype (uint8 for every built-in set) and are converted per
    item, so CIFAR-10 and SVHN take a quarter of the memory float32 copies would.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, scale: float) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.scale = float(scale)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].to(torch.float32) / self.scale, self.labels[index]


def channel_stats(
    images: torch.Tensor, scale: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images / scale``, accumulated in float64 chunks.

    Chunking keeps the peak memory of CIFAR-10 and SVHN small while staying exact.
    """
    if len(images) == 0:
        raise ValueError("cannot compute channel statistics of zero images")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), STATS_CHUNK):
        block = images[start : start + STATS_CHUNK].to(torch.float64) / scale
        total += block.sum(dim=(0, 2, 3))
        squares += block.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0.0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
