"""GPU lane: every --method × --mode × --train combination of the main job, on a reduced budget.

What it catches: any phase (pre-training, HARP/HYDRA fitting, Taylor or stability scoring,
retraining between rounds, certified training and certification, attacks, evaluation) that
creates a tensor on the CPU or moves the model off the GPU half-way through the run.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harp_plugin.pipeline.config import MASK_METHODS, RunConfig
from harp_plugin.pipeline.run import run
from harp_plugin.registry import get_registry

pytestmark = pytest.mark.cuda

COMBINATIONS = [
    pytest.param(method, mode, train, id=f"{method}-{mode}-{train}")
    for train in ("adversarial", "certified")
    for mode in ("channel", "unstructured")
    for method in get_registry().names("importances")
    if mode == "channel" or method in MASK_METHODS
]


def reduced(lane_device: torch.device, out_dir: Path, **settings) -> RunConfig:
    """A few seconds per run: 192 training images, width-4 CNN, one epoch per phase, 1-step attacks.

    HARP's γ is raised every optimiser step from 5 so that it reaches its target in 2 epochs.
    """
    return RunConfig(
        max_train=192, max_eval=64, model_width=4, device=str(lane_device), eps=0.05,
        train_attack_steps=1, val_attack_steps=1, eval_attacks=("fgsm",), eval_attack_steps=1,
        pretrain_epochs=1, prune_epochs=2, finetune_epochs=1, gamma0=5.0, gamma_period=0.01,
        out_dir=str(out_dir), progress=False, **settings,
    )


@pytest.mark.parametrize(("method", "mode", "train"), COMBINATIONS)
def test_every_combination_runs_on_the_lane_device(method, mode, train, lane_device, tmp_path: Path) -> None:
    rounds = 2 if mode == "channel" and method not in MASK_METHODS else 1
    config = reduced(lane_device, tmp_path, method=method, mode=mode, train=train, prune_rounds=rounds)
    report = run(config, log=lambda _: None)
    assert torch.device(report.device).type == lane_device.type
    saved = torch.load(tmp_path / "pruned.pt", weights_only=True)["state"]
    assert {t.device.type for t in saved.values()} == {lane_device.type}, "the model stayed on the lane device"
    for side in (report.dense, report.pruned):
        assert 0.0 <= side.robust_accuracy["FGSM"] <= 1.0 and 0.0 <= side.clean_accuracy <= 1.0
    if mode == "channel":
        assert report.pruned.parameters < report.dense.parameters
    else:
        assert report.pruned.sparsity > 0.4
    if train == "certified":
        for side in (report.dense, report.pruned):
            assert 0.0 <= side.extras["certified accuracy (IBP)"] <= side.extras["certified accuracy (CROWN-IBP)"] + 1e-9
