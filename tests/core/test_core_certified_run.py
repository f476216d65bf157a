"""The certified main job refuses what it cannot certify before spending any training on it."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from harp_plugin.bounds.errors import UnsupportedLayerError
from harp_plugin.cli.main import main
from harp_plugin.models import small_cnn
from harp_plugin.pipeline.config import RunConfig
from harp_plugin.pipeline.rewinding import check_capturable

run_module = importlib.import_module("harp_plugin.pipeline.run")  # the package re-exports run()


def _unboundable(config, splits) -> nn.Module:
    model = small_cnn(width=4)
    model[1][2] = nn.Tanh()  # a layer the engine has no rule for
    return model


def test_a_model_the_engine_cannot_bound_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(run_module, "build_model", _unboundable)
    config = RunConfig(train="certified", max_train=64, max_eval=32, progress=False, out_dir=str(tmp_path / "run"))
    with pytest.raises(UnsupportedLayerError, match="layer '1.2' of type Tanh"):
        run_module.run(config, log=lambda _: None)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), "nothing was written"


def test_the_cli_names_the_unboundable_layer_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(run_module, "build_model", _unboundable)
    out = tmp_path / "run"
    flags = ["--train", "certified", "--max-train", "64", "--max-eval", "32", "--no-progress", "--out-dir", str(out)]
    assert main(["run", *flags]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("harp-prune: error:")]
    assert len(errors) == 1 and "layer '1.2' of type Tanh is not supported by the bound engine" in errors[0]
    assert not out.exists() or not any(out.iterdir()), "nothing was written"


def test_resuming_past_an_unsaved_rewind_epoch_fails_before_training(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"epoch": 2}, out / "pretrain.pt")  # a pre-training checkpoint after its 3rd epoch
    before = (out / "pretrain.pt").read_bytes()
    flags = ["--max-train", "64", "--max-eval", "32", "--no-progress", "--pretrain-epochs", "4", "--resume",
             "--rewind", "epoch:2", "--out-dir", str(out)]
    assert main(["run", *flags]) == 2
    error = capsys.readouterr().err
    assert "rewind epoch 2 was never saved" in error and "has already finished 3 epochs" in error
    assert sorted(p.name for p in out.iterdir()) == ["pretrain.pt"], "nothing else was written"
    assert (out / "pretrain.pt").read_bytes() == before, "the checkpoint was not touched"


def test_a_resumed_run_may_still_capture_a_later_rewind_epoch(tmp_path: Path) -> None:
    torch.save({"epoch": 1}, tmp_path / "pretrain.pt")  # 2 epochs finished: epoch 3 is yet to come
    check_capturable(tmp_path, 3, tmp_path / "pretrain.pt")
    check_capturable(tmp_path, 0, tmp_path / "pretrain.pt")  # init: rebuilt from the seed, always capturable
    with pytest.raises(ValueError, match="rewind epoch 2 was never saved"):
        check_capturable(tmp_path, 2, tmp_path / "pretrain.pt")
    torch.save({}, tmp_path / "rewind-epoch2.pt")
    check_capturable(tmp_path, 2, tmp_path / "pretrain.pt")  # saved before the interruption


def test_certified_defaults_differ_from_adversarial_ones_and_are_stated() -> None:
    certified, adversarial = RunConfig(train="certified"), RunConfig()
    assert (certified.model, certified.pretrain_epochs) == ("certified-cnn", 20)
    assert (adversarial.model, adversarial.pretrain_epochs, adversarial.finetune_epochs) == ("small-cnn", 3, 2)
    assert RunConfig(train="certified", model="small-cnn").model == "small-cnn", "an explicit choice wins"


def test_retraining_ramps_eps_again_only_after_rewinding_to_before_the_full_eps() -> None:
    # 20 epochs, eps = 0 for 5% (1 epoch), then the ramp over 50% (10): full eps from epoch 11
    assert RunConfig(train="certified", rewind="epoch:10").rewinds_before_full_eps
    assert not RunConfig(train="certified", rewind="epoch:11").rewinds_before_full_eps
    assert RunConfig(train="certified", rewind="init").rewinds_before_full_eps
    assert not RunConfig(train="certified").rewinds_before_full_eps, "no rewinding"
    assert not RunConfig(rewind="init").rewinds_before_full_eps, "adversarial training has no eps ramp"
