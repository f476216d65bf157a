"""Model zoo: torchvision classifiers Torch-Pruning prunes also prune with HarpImportance.

A representative subset sized for CI (docs/harp.md lists the zoo, the subset and why the
others are left out): every family's building block — residual, inverted residual with
squeeze-excitation, depthwise, grouped conv, concatenation, channels-last ConvNeXt blocks,
attention — at a small resolution, with a short HARP fit on random data.
"""
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import HarpImportance
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma

ZOO = {  # name: (builder options, input size)
    "resnet18": ({}, 32),
    "mobilenet_v2": ({"width_mult": 0.25}, 32),
    "mobilenet_v3_small": ({}, 32),
    "efficientnet_b0": ({}, 32),
    "regnet_x_400mf": ({}, 32),
    "mnasnet0_5": ({}, 32),
    "squeezenet1_1": ({}, 64),
    "convnext_tiny": ({}, 32),
    "vit_b_16": ({"image_size": 32}, 32),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_torchvision_classifier_prunes_with_harp(name: str) -> None:
    options, size = ZOO[name]
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10, **options)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, size, size, generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    loader = DataLoader(TensorDataset(images, labels), batch_size=2)
    imp = HarpImportance(0.5, "harp", gamma=IncrementalGamma(1.0, period=0.5))
    imp.fit(model, loader, loss=PGDATLoss(eps=0.03, steps=1), val_loader=loader, config=TrainConfig(epochs=2, lr=0.1))
    before = sum(p.numel() for p in model.parameters())
    example_inputs = images[:1]
    imp.make_pruner(model, example_inputs).step()
    if hasattr(model, "hidden_dim"):  # torchvision's ViT reads it in forward
        model.hidden_dim = model.conv_proj.out_channels
    assert model.eval()(example_inputs).shape == (1, 10)
    assert sum(p.numel() for p in model.parameters()) < before
    assert abs(imp.projection.arrival_error) <= 0.005
