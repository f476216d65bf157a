"""The certified main job refuses what it cannot certify before spending any training on it."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from torch import nn

from harp_plugin.bounds.errors import UnsupportedLayerError
from harp_plugin.models import small_cnn
from harp_plugin.pipeline.config import RunConfig

run_module = importlib.import_module("harp_plugin.pipeline.run")  # the package re-exports run()


def test_a_model_the_engine_cannot_bound_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    def unboundable(config, splits) -> nn.Module:
        model = small_cnn(width=4)
        model[1][2] = nn.Tanh()  # a layer the engine has no rule for
        return model

    monkeypatch.setattr(run_module, "build_model", unboundable)
    config = RunConfig(train="certified", max_train=64, max_eval=32, progress=False, out_dir=str(tmp_path / "run"))
    with pytest.raises(UnsupportedLayerError, match="layer '1.2' of type Tanh"):
        run_module.run(config, log=lambda _: None)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), "nothing was written"


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
