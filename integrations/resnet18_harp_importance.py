"""HarpImportance in an ordinary Torch-Pruning pipeline on a torchvision ResNet18.

The same shape as Torch-Pruning's own ResNet example, with one extra call: ``imp.fit``
learns channel scores and per-layer kept fractions under an adversarial loss. Random
32×32 data and a handful of steps keep it under a minute on a CPU; use real loaders and
the methods.md epochs for real work.

    PYTHONPATH=. python integrations/resnet18_harp_importance.py
"""
from __future__ import annotations

import torch
import torch_pruning as tp
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import HarpImportance
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torchvision.models.resnet18(num_classes=10)
    example_inputs = torch.randn(1, 3, 32, 32)
    images, labels = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    train = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(images[:16], labels[:16]), batch_size=16)

    imp = HarpImportance(target_kept=0.5, kept_init=0.5, gamma=IncrementalGamma(10.0, period=0.5))
    imp.fit(model, train, loss=PGDATLoss(eps=8 / 255, steps=2), val_loader=val, config=TrainConfig(epochs=3))

    base_macs, base_params = tp.utils.count_ops_and_params(model, example_inputs)
    pruner = tp.MetaPruner(
        model, example_inputs, importance=imp,
        pruning_ratio_dict=imp.pruning_ratio_dict(model, example_inputs),  # learned, reconciled
        ignored_layers=[model.fc],
    )
    pruner.step()
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    print(f"params {base_params / 1e6:.2f} M -> {params / 1e6:.2f} M, MACs {base_macs / 1e6:.1f} M -> {macs / 1e6:.1f} M")
    print("output", tuple(model(example_inputs).shape))


if __name__ == "__main__":
    main()
