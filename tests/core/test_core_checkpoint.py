"""Checkpoints: atomic writes, weights_only loads, damaged files, foreign architectures."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harp_plugin.models import small_cnn
from harp_plugin.robust.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint


def test_round_trip_loads_with_weights_only(tmp_path: Path, tiny_model) -> None:
    path = save_checkpoint({"model": tiny_model.state_dict(), "epoch": 3}, tmp_path / "ck.pt")
    loaded = load_checkpoint(path, "cpu")
    assert loaded["epoch"] == 3
    assert all(torch.equal(loaded["model"][k], v) for k, v in tiny_model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"], "no temporary file is left behind"


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint({"epoch": 1}, tmp_path / "ck.pt")

    def broken_save(obj, stream) -> None:
        stream.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path, "cpu")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_truncated_and_missing_checkpoints_are_clear_errors(tmp_path: Path, tiny_model) -> None:
    path = save_checkpoint({"model": tiny_model.state_dict()}, tmp_path / "ck.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="ck.pt' is corrupt or not a harp-prune checkpoint"):
        load_checkpoint(path, "cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt", "cpu")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"payload": Path("x")}, path)  # an arbitrary object needs full unpickling
    with pytest.raises(CheckpointError, match="evil.pt' is corrupt or not a harp-prune checkpoint .UnpicklingError"):
        load_checkpoint(path, "cpu")


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    save_checkpoint({"model": small_cnn(width=4).state_dict()}, tmp_path / "ck.pt")
    other = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match="does not fit the model: missing"):
        load_model_state(other, load_checkpoint(tmp_path / "ck.pt", "cpu")["model"])
