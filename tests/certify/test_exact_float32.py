"""Bounds are computed with TensorFloat-32 off, and the user's TF32 settings come back after."""
from __future__ import annotations

import pytest
import torch

from harp_plugin.bounds import compute_bounds
from harp_plugin.bounds.precision import exact_float32


def test_tf32_is_off_inside_and_restored_after() -> None:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    matmul.allow_tf32 = True
    try:
        with exact_float32():
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 == before[0] and matmul.allow_tf32
    finally:
        matmul.allow_tf32 = before[1]


class _Seen(Exception):
    """Stops compute_bounds at its first sweep, carrying the cuDNN TF32 flag it ran under."""


def _record_flag(*_args, **_kwargs):
    raise _Seen(torch.backends.cudnn.allow_tf32)


def test_compute_bounds_runs_inside_it(monkeypatch) -> None:
    monkeypatch.setattr("harp_plugin.bounds.engine.interval_sweep", _record_flag)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(_Seen) as seen:
        compute_bounds(model, torch.rand(1, 4), 0.1, method="ibp")
    assert seen.value.args == (False,)
