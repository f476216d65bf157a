"""torch.distributed on the CPU (gloo, 2 processes launched by torchrun).

After a HARP channel run and a stability run both ranks must hold bit-identical state dicts
(same channels removed, same weights), and they must equal the single-process run on the same
global batches within ``TOLERANCE``: the ranks average two half-batch gradients where one
process takes one full-batch mean, so only float summation order differs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gloo_scenarios as scenarios

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # absolute, on every parameter and buffer after the whole run


def torchrun(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
                       OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *arguments],
        capture_output=True, text=True, env=environment, timeout=timeout, cwd=ROOT,
    )


@pytest.mark.slow
def test_two_gloo_ranks_agree_with_each_other_and_with_one_process(tmp_path: Path) -> None:
    done = torchrun(str(Path(scenarios.__file__)), str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    train, val, example = scenarios.data()
    reference_loader = scenarios.reference_loader(train)
    single = {"harp": scenarios.harp_channel_run(reference_loader, val, example),
              "stability": scenarios.stability_run(reference_loader, val, example)}
    for run in ("harp", "stability"):
        zero, one, alone = ranks[0][run], ranks[1][run], single[run]
        assert zero.keys() == one.keys() == alone.keys()
        for name in zero:
            assert torch.equal(zero[name], one[name]), f"{run}: rank 0 and rank 1 differ in {name}"
            assert zero[name].shape == alone[name].shape, f"{run}: {name} pruned differently from one process"
            assert torch.allclose(zero[name].float(), alone[name].float(), atol=TOLERANCE), f"{run}: {name}"
        assert zero["0.weight"].shape[0] < 8, f"{run}: channels were removed"


@pytest.mark.slow
def test_main_job_under_torchrun_writes_once_from_rank_zero(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = torchrun("-m", "harp_plugin.cli.main", "run", "--device", "cpu", "--max-train", "128", "--max-eval", "32",
                    "--model-width", "4", "--pretrain-epochs", "1", "--finetune-epochs", "1", "--train-attack-steps", "1",
                    "--val-attack-steps", "1", "--eval-attacks", "fgsm", "--eval-attack-steps", "1", "--no-progress",
                    "--out-dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("total wall time") == 1, "only rank 0 prints the report"
    assert {p.name for p in out.iterdir() if p.name.startswith(".")} == set(), "no temporary file left behind"
    assert (out / "report.json").is_file() and (out / "pruned.pt").is_file()
