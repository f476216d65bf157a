"""The runnable examples in integrations/ keep working (they are what users copy first)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch_pruning as tp

from harp_plugin.masking import conv_linear_flops
from harp_plugin.models import small_cnn

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "integrations").glob("*.py"))
HARP_LOOPS = {"accelerate_harp_loop", "lightning_harp_callback"}  # own loops: SmallCNN width 8, 50 % of channels


def uniform_budget() -> float:
    """The FLOPs share Torch-Pruning's uniform 50 % channel pruning keeps: the examples' budget."""
    model = small_cnn(width=8)
    dense = conv_linear_flops(model, torch.zeros(1, 1, 28, 28))
    tp.MetaPruner(model, torch.zeros(1, 1, 28, 28), importance=tp.importance.RandomImportance(), pruning_ratio=0.5,
                  ignored_layers=[model[-1]]).step()
    return conv_linear_flops(model, torch.zeros(1, 1, 28, 28)) / dense


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_to_completion(example: Path) -> None:
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "the example prints what it did"
    if example.stem in HARP_LOOPS:
        kept = float(re.search(r"the pruned network keeps ([0-9.]+) of the Conv/Linear FLOPs", done.stdout)[1])
        assert kept == pytest.approx(uniform_budget(), rel=0.005), "ends on its budget, not below it"


def test_there_are_examples_to_run() -> None:
    assert len(EXAMPLES) >= 2
