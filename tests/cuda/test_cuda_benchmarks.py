"""GPU lane: every benchmark's smoke run with ``--device`` (tiny budgets), printing the device line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[2]


def _smoke(script: str, *flags: str, device: torch.device) -> str:
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *flags, "--device", str(device)],
                          capture_output=True, text=True, env=environment, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"device {device}" in done.stdout and f"torch {torch.__version__}" in done.stdout
    return done.stdout


def test_bench_harp_smoke(lane_device: torch.device, tmp_path: Path) -> None:
    printed = _smoke("bench_harp.py", "--out", str(tmp_path), "--results", str(tmp_path / "results.md"),
                     "--seeds", "0", "--train-size", "128", "--train-steps", "1", "--pretrain-epochs", "1",
                     "--prune-epochs", "1", "--finetune-epochs", "1", "--val-samples", "32", "--eval-samples", "32",
                     "--timing-pairs", "1", device=lane_device)
    assert "Timing machine: device" in printed


def test_bench_harp_channel_smoke(lane_device: torch.device, tmp_path: Path) -> None:
    printed = _smoke("bench_harp_channel.py", "--out", str(tmp_path), "--plot", str(tmp_path / "arrival.png"),
                     "--seeds", "0", "--train-size", "128", "--train-steps", "1", "--pretrain-epochs", "1",
                     "--prune-epochs", "2", "--finetune-epochs", "1", "--val-samples", "32", "--eval-samples", "32",
                     "--timing-pairs", "1", device=lane_device)
    assert "| 95 % | harp |" in printed and "| 0 % | dense, same budget |" in printed
    assert "harp channel, cpu time: ratios" in printed and (tmp_path / "arrival.png").exists()


def test_bench_stability_smoke(lane_device: torch.device) -> None:
    printed = _smoke("bench_stability.py", "--seeds", "0", "--epochs", "1", "--warmup", "0", "--ramp", "1",
                     "--rounds", "1", "--retrain", "1", "--calibration", "16", "--width", "4", device=lane_device)
    assert "| stability | 1 |" in printed


def test_bench_certify_smoke(lane_device: torch.device) -> None:
    printed = _smoke("bench_certify.py", "--samples", "20", "--crown-samples", "0", "--batch-size", "10",
                     "--train-epochs", "1", device=lane_device)
    assert printed.count("| small_cnn |") == 2, "IBP and CROWN-IBP rows"
