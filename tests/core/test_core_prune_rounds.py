"""Channel removal in geometric rounds, with retraining between them."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from harp_plugin.importance.channels import remove_channels
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.models import small_cnn


def conv_widths(model: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_rounds_reach_the_same_ratio_as_one_shot_and_retrain_in_between() -> None:
    torch.manual_seed(0)
    example = torch.rand(2, 1, 28, 28)
    one_shot, rounds = small_cnn(width=16), small_cnn(width=16)
    rounds.load_state_dict(one_shot.state_dict())
    remove_channels(one_shot, tp.importance.GroupMagnitudeImportance(), 0.5, example)
    seen: list[list[int]] = []
    remove_channels(rounds, tp.importance.GroupMagnitudeImportance(), 0.5, example, rounds=3,
                    between_rounds=lambda k: seen.append(conv_widths(rounds)))
    assert conv_widths(rounds) == conv_widths(one_shot) == [8, 16, 16, 32]
    assert len(seen) == 2, "retraining runs between rounds, not after the last one"
    assert sum(seen[0]) > sum(seen[1]) > sum(conv_widths(rounds)), "each round removes a share of what is left"


def test_bad_round_settings_are_refused() -> None:
    model, example = small_cnn(width=4), torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match="rounds must be >= 1, got 0"):
        remove_channels(model, tp.importance.GroupMagnitudeImportance(), 0.5, example, rounds=0)
    with pytest.raises(ValueError, match="HarpImportance learns its ratios for one removal"):
        remove_channels(model, HarpImportance(0.5), 0.5, example, rounds=2)
