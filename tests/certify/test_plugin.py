"""The certification components are reachable through the plugin registry."""
from __future__ import annotations

import torch

from certify_nets import sequential_net
from harp_plugin.certify.accuracy import CertifiedAccuracy
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.robust.certified import CertifiedLoss
from harp_plugin.registry import build_registry


def test_registered_components_build() -> None:
    registry = build_registry()
    model = sequential_net(0)
    x = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    certifier = registry.create("certifiers", "crown-ibp", backend="native", progress=False)
    result = certifier(model, [(x, model(x).argmax(1))], 0.001)
    assert isinstance(result, CertifiedAccuracy) and result.method == "crown-ibp"
    loss = registry.create("losses", "certified-ibp", eps=0.01)
    assert isinstance(loss, CertifiedLoss) and loss(model, x, torch.zeros(4, dtype=torch.long)).dim() == 0
    assert isinstance(registry.create("importances", "stability", model=model, calibration=x, eps=0.01), StabilityImportance)
    assert registry.create("schedulers", "geometric")(0.5, 6)[-1] == 0.5
    assert {"nrs", "rs", "certified-crown-ibp"} <= set(registry.names("losses"))
