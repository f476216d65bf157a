"""Fine-grained masks survive fine-tuning and checkpoints, and export to plain PyTorch."""
import io

import torch
from torch import nn

from harp_plugin.masking import attach_masks, format_report, full_masks, remove_masks, sparsity_report
from tests.harp.conftest import tiny_cnn


def _trained_masks(model: nn.Module):
    """HARP masks after a few score/rate steps, then frozen."""
    masks = attach_masks(model, 0.05, kept_init=0.2)
    optimiser = torch.optim.SGD(masks.score_parameters(), lr=0.5)
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 4, (8,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y) + masks.compression_loss()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    masks.freeze()
    return masks


def test_frozen_masks_persist_through_fine_tuning(sequential: nn.Sequential) -> None:
    masks = _trained_masks(sequential)
    before = full_masks(masks)
    assert masks.score_parameters() == []
    optimiser = torch.optim.SGD(sequential.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 4, (8,))
    for _ in range(3):
        optimiser.zero_grad()
        nn.functional.cross_entropy(sequential(x), y).backward()
        optimiser.step()
    after = full_masks(masks)
    for name, layer in masks.layers.items():
        assert torch.equal(before[name], after[name]), name
        assert torch.all(layer.weight[after[name] == 0] == 0), name


def test_checkpoint_round_trip_with_weights_only_load(sequential: nn.Sequential) -> None:
    masks = _trained_masks(sequential)
    buffer = io.BytesIO()
    torch.save(sequential.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)
    fresh = tiny_cnn()
    fresh_masks = attach_masks(fresh, 0.05, kept_init=0.2)
    fresh.load_state_dict(state)
    assert all(m.frozen for m in fresh_masks.masks().values())
    for name in masks.layers:
        assert torch.equal(full_masks(masks)[name], full_masks(fresh_masks)[name])
    x = torch.randn(2, 1, 12, 12)
    sequential.eval(), fresh.eval()
    torch.testing.assert_close(sequential(x), fresh(x))


def test_export_as_prune_masks_and_zeroed_weights(sequential: nn.Sequential) -> None:
    masks = _trained_masks(sequential)
    x = torch.randn(2, 1, 12, 12)
    sequential.eval()
    expected = sequential(x).detach()
    report = sparsity_report(masks)
    exported = remove_masks(masks, how="prune")
    for name, layer in masks.layers.items():
        assert torch.equal(layer.weight_mask, exported[name])
        assert not hasattr(layer, "parametrizations")
    torch.testing.assert_close(sequential(x), expected)
    assert sum(r.kept_units for r in report) == sum(int(m.sum()) for m in exported.values())


def test_export_zeroed_weights_and_report(sequential: nn.Sequential) -> None:
    masks = _trained_masks(sequential)
    rows = sparsity_report(masks)
    table = format_report(rows)
    remove_masks(masks, how="zero")
    zeros = sum(int((layer.weight == 0).sum()) for layer in masks.layers.values())
    assert zeros == sum(r.units - r.kept_units for r in rows)
    assert table.splitlines()[-1].startswith("| total |")
    assert [r.name for r in rows] == ["0", "3", "7", "9"]
    assert all(0 < r.kept_fraction <= 1 for r in rows)
