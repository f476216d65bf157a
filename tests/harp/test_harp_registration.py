"""The importance plugin registers Torch-Pruning's built-ins under short names."""
import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.importance import plugin


def _group() -> tp.Group:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 1, 8, 8))
    return graph.get_pruning_group(model[0], tp.prune_conv_out_channels, idxs=[0, 1, 2, 3])


def test_builtin_factories_score_every_channel() -> None:
    torch.manual_seed(0)
    table = plugin.harp_importances()
    group = _group()
    for name in ("magnitude", "taylor", "random"):
        assert name in table
    assert isinstance(table["magnitude"](), tp.importance.Importance)
    assert table["magnitude"](p=1)(group).shape == (4,)
    assert table["random"]()(group).shape == (4,)


def test_learned_importances_and_gamma_schedule_are_registered() -> None:
    from harp_plugin.importance import HarpImportance
    from harp_plugin.importance.taylor import AdversarialTaylorImportance
    from harp_plugin.schedulers import IncrementalGamma

    table = plugin.harp_importances()
    for name in ("harp", "hydra", "lwm"):
        importance = table[name](0.5)
        assert isinstance(importance, HarpImportance) and importance.method == name
    assert isinstance(table["adv-taylor"](), AdversarialTaylorImportance)
    assert isinstance(plugin.harp_schedulers()["harp-gamma"](gamma0=0.1), IncrementalGamma)
