"""Fine-grained (unstructured) HARP on a torchvision MobileNetV3-Small, end to end.

Masks every Conv2d/Linear, trains scores and per-layer rates towards 99% sparsity under
an adversarial loss (θ frozen), freezes the masks, fine-tunes θ, prints the per-layer
sparsity report and exports the result as ``torch.nn.utils.prune`` masks. Random data and
a few steps keep it under a minute on a CPU.

    PYTHONPATH=. python integrations/torchvision_fine_grained_harp.py
"""
from __future__ import annotations

import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import prune_fine_grained
from harp_plugin.masking import format_report, remove_masks
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    images, labels = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    train = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(images[:16], labels[:16]), batch_size=16)

    result = prune_fine_grained(
        model, PGDATLoss(eps=8 / 255, steps=2), train, val, target_kept=0.01, method="harp",
        kept_init=0.012, prune=TrainConfig(epochs=2, lr=0.1), finetune=TrainConfig(epochs=1, lr=0.01),
        gamma=IncrementalGamma(0.5, period=0.5), strict=False,
    )
    print(format_report(result.report))
    remove_masks(result.masks, how="prune")  # plain PyTorch from here on
    zeros = sum(int((m.weight == 0).sum()) for m in result.masks.layers.values())
    total = sum(m.weight.numel() for m in result.masks.layers.values())
    print(f"zero weights after export: {zeros / total:.2%}")


if __name__ == "__main__":
    main()
