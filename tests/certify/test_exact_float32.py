"""Bounds are computed with TensorFloat-32 off, and the user's TF32 settings come back after."""
from __future__ import annotations

import pytest
import torch

from harp_plugin.bounds import compute_bounds
from harp_plugin.bounds.precision import exact_float32

matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
needs_precision_api = pytest.mark.skipif(not hasattr(matmul, "fp32_precision"), reason="torch < 2.9: legacy TF32 flags only")


@pytest.fixture
def user_precision():
    saved = matmul.fp32_precision, conv.fp32_precision
    yield
    matmul.fp32_precision, conv.fp32_precision = saved


@needs_precision_api
def test_tf32_is_off_inside_and_the_legacy_setting_restored_after(user_precision) -> None:
    matmul.allow_tf32 = True           # a user of the legacy flags
    with exact_float32():
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    assert matmul.allow_tf32 is True, "the legacy flag reads (no mixed-API error) and is restored"


@needs_precision_api
def test_a_user_of_the_precision_api_is_not_broken(user_precision) -> None:
    matmul.fp32_precision = conv.fp32_precision = "tf32"   # reading allow_tf32 now raises in torch
    with exact_float32():
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")


@needs_precision_api
def test_the_setting_is_restored_after_an_error(user_precision) -> None:
    matmul.fp32_precision = "tf32"
    with pytest.raises(KeyError), exact_float32():
        raise KeyError("inside")
    assert matmul.fp32_precision == "tf32"


class _Seen(Exception):
    """Stops compute_bounds at its first sweep, carrying the precision it ran under."""


def _record_precision(*_args, **_kwargs):
    raise _Seen(matmul.fp32_precision, conv.fp32_precision)


@needs_precision_api
def test_compute_bounds_runs_inside_it(monkeypatch, user_precision) -> None:
    matmul.fp32_precision = conv.fp32_precision = "tf32"
    monkeypatch.setattr("harp_plugin.bounds.engine.interval_sweep", _record_precision)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(_Seen) as seen:
        compute_bounds(model, torch.rand(1, 4), 0.1, method="ibp")
    assert seen.value.args == ("ieee", "ieee")
