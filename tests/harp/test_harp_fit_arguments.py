"""HarpImportance uses every argument it is given and refuses bad ones by name.

Each test gives one argument a value whose effect is visible from outside (an error the
default would not raise, a layer left out, a schedule that moved, an attack that ran) and
checks that effect, so an argument dropped on its way to the masks or the training loop fails.
"""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.importance import HarpImportance, NotFittedError, TargetNotReachedError
from harp_plugin.masking import attach_masks
from harp_plugin.masking.errors import MaskingError
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import StandardLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma
from tests.harp.conftest import tiny_cnn

EXAMPLE = torch.zeros(1, 1, 12, 12)


def loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 12, 12, generator=generator), torch.randint(0, 4, (16,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)


def test_fit_without_inputs_or_with_an_empty_loader_says_so(sequential: nn.Sequential) -> None:
    with pytest.raises(ValueError, match="^fit needs example_inputs or a train_loader to take them from$"):
        HarpImportance(0.5, "lwm").fit(sequential)
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 12, 12), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match=r"^HarpImportance\.fit got an empty train_loader \(it yields no batch\)$"):
        HarpImportance(0.5, "lwm").fit(sequential, empty)


@pytest.mark.parametrize("kept_init, alpha", [(0.2, 0.5), (0.04, 0.1)])
def test_kept_init_and_alpha_reach_the_masks(sequential: nn.Sequential, kept_init: float, alpha: float) -> None:
    """a_min = α·a_t: 0.25 and 0.05 here, both above kept_init, which the masks refuse
    (the defaults, kept_init = min(10·a_t, (1 + a_t)/2) = 0.75 and α = 0.1, would pass)."""
    imp = HarpImportance(0.5, "harp", kept_init=kept_init, alpha=alpha)
    with pytest.raises(MaskingError, match=f"kept_init={kept_init} is below a_min"):
        imp.fit(sequential, example_inputs=EXAMPLE)


def test_ignored_layers_learn_nothing_and_stay_whole(sequential: nn.Sequential) -> None:
    imp = HarpImportance(0.5, "lwm")
    imp.fit(sequential, example_inputs=EXAMPLE, ignored_layers=[sequential[3]])
    assert sequential[3] in imp.ignored_layers and sequential[0] not in imp.ignored_layers
    assert set(imp.learned_kept_fractions()) == {"0", "7"}
    imp.make_pruner(sequential, EXAMPLE).step()
    assert (sequential[0].out_channels, sequential[3].out_channels, sequential[7].out_features) == (4, 16, 16)


def test_pruner_options_shape_the_groups_of_fit(sequential: nn.Sequential) -> None:
    """root_module_types=[Linear]: only the hidden Linear layer is a group root, so only it learns."""
    imp = HarpImportance(0.5, "lwm")
    imp.fit(sequential, example_inputs=EXAMPLE, pruner_options={"root_module_types": [nn.Linear]})
    assert set(imp.learned_kept_fractions()) == {"7"}


def test_make_pruner_forwards_its_options(sequential: nn.Sequential) -> None:
    """round_to=3: the learned halves (4 of 8, 8 of 16, 16 of 32) become multiples of 3."""
    imp = HarpImportance(0.5, "lwm")
    imp.fit(sequential, example_inputs=EXAMPLE)
    imp.make_pruner(sequential, EXAMPLE, round_to=3).step()
    assert (sequential[0].out_channels, sequential[3].out_channels, sequential[7].out_features) == (3, 6, 15)


def test_the_given_gamma_schedule_is_the_one_stepped(sequential: nn.Sequential) -> None:
    train, val = loaders()
    gamma = IncrementalGamma(0.5, period=0.5)
    HarpImportance(0.5, "harp", gamma=gamma).fit(sequential, train, loss=StandardLoss(), val_loader=val,
                                                 config=TrainConfig(epochs=1, lr=0.1))
    assert gamma.periods_done > 0 or gamma.frozen


def test_validation_runs_the_given_attack(sequential: nn.Sequential) -> None:
    train, val = loaders()
    seen: list[int] = []

    def factory(model: nn.Module):
        def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            seen.append(len(x))
            return x
        return attack

    imp = HarpImportance(0.5, "hydra")
    imp.fit(sequential, train, loss=StandardLoss(), val_loader=val, config=TrainConfig(epochs=1, lr=0.1),
            val_attack=Attack("spy", 0.1, factory))
    assert sum(seen) == 8, "the validation split (8 samples) was attacked once per epoch"
    graph = tp.DependencyGraph().build_dependency(sequential, example_inputs=EXAMPLE)
    scores = imp(graph.get_pruning_group(sequential[3], tp.prune_conv_out_channels, idxs=list(range(16))))
    assert scores.max().item() == 1.0, "learned scores are max-normalised per layer"



def test_a_run_that_selects_no_epoch_raises_unless_told_not_to(sequential: nn.Sequential) -> None:
    """Zero prune epochs: no epoch can be selected, so the target counts as never reached; the
    failed fit leaves the model as it was (no masks left attached, same state), so a second
    fit on it works."""
    train, val = loaders()
    before = {k: v.clone() for k, v in sequential.state_dict().items()}
    with pytest.raises(TargetNotReachedError, match="hydra never reached the target kept fraction 0.5 in 0 epochs"):
        HarpImportance(0.5, "hydra").fit(sequential, train, loss=StandardLoss(), val_loader=val,
                                         config=TrainConfig(epochs=0, lr=0.1))
    assert not any(parametrize.is_parametrized(m) for m in sequential.modules())
    after = sequential.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    HarpImportance(0.5, "hydra").fit(sequential, train, loss=StandardLoss(), val_loader=val,
                                     config=TrainConfig(epochs=1, lr=0.1))
    with pytest.warns(UserWarning, match="hydra never reached the target"):
        HarpImportance(0.5, "hydra").fit(tiny_cnn(), train, loss=StandardLoss(), val_loader=val,
                                         config=TrainConfig(epochs=0, lr=0.1), strict=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "magnitude"}, "HarpImportance method must be 'harp', 'hydra' or 'lwm', got 'magnitude'"),
    ({"alpha": 0.0}, r"alpha \(the floor a_min = alpha \* target_kept\) must be in \(0, 1\], got 0.0"),
    ({"alpha": 1.5}, r"alpha .* must be in \(0, 1\], got 1.5"),
    ({"kept_init": 0.0}, r"kept_init must be in \(0, 1\], got 0.0"),
    ({"kept_init": 1.5}, r"kept_init must be in \(0, 1\], got 1.5"),
    ({"flops_target": 1.5}, "flops_target must be a kept fraction strictly between 0 and 1"),
    ({"method": "hydra", "flops_target": 0.3},
     r"flops_target needs learned rates \(method='harp'\), got method='hydra'"),
])
def test_bad_arguments_are_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HarpImportance(0.5, **kwargs)


def test_the_closed_ends_of_alpha_and_kept_init_are_accepted() -> None:
    imp = HarpImportance(0.5, alpha=1.0, kept_init=1.0)
    assert (imp.alpha, imp.kept_init, imp.projection) == (1.0, 1.0, None)


def test_fit_leaves_the_model_dense_and_answers_normalised_scores(sequential: nn.Sequential) -> None:
    """LWM at a_t = ½: every layer keeps half; weights untouched (no zeros written); each
    group's scores are max-normalised, so the best channel scores exactly 1."""
    weights = {name: p.detach().clone() for name, p in sequential.named_parameters()}
    imp = HarpImportance(0.5, "lwm")
    imp.fit(sequential, example_inputs=EXAMPLE)
    for name, p in sequential.named_parameters():
        assert torch.equal(p, weights[name]), f"{name} changed"
    assert imp.learned_kept_fractions() == {"0": 0.5, "3": 0.5, "7": 0.5}
    graph = tp.DependencyGraph().build_dependency(sequential, example_inputs=EXAMPLE)
    for layer, width in ((sequential[0], 8), (sequential[3], 16), (sequential[7], 32)):
        handler = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
        scores = imp(graph.get_pruning_group(layer, handler, idxs=list(range(width))))
        assert scores.max().item() == 1.0 and scores.min().item() >= 0.0


def test_unfitted_and_foreign_models_are_errors_that_say_what_to_do(sequential: nn.Sequential) -> None:
    with pytest.raises(NotFittedError, match=r"imp\.fit\(model, train_loader, loss=\.\.\., val_loader=\.\.\., "
                                             r"config=\.\.\.\) first \(there is no magnitude fallback\)"):
        HarpImportance(0.5).ignored_layers
    imp = HarpImportance(0.5, "lwm")
    imp.fit(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(400, 2)), example_inputs=EXAMPLE)
    with pytest.raises(NotFittedError, match="fitted to another model, not this Sequential"):
        imp.pruning_ratio_dict(sequential, EXAMPLE)


def test_adopt_needs_channel_masks(sequential: nn.Sequential) -> None:
    masks = attach_masks(sequential, 0.5, method="lwm")
    with pytest.raises(ValueError, match="HarpImportance needs channel masks, got mode='unstructured'"):
        HarpImportance(0.5, "lwm").adopt(masks, EXAMPLE)

