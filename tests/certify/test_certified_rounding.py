"""A certificate needs its margins to clear rounding, not just 0: the bounds carry no directed
rounding, so a float32 lower bound of 1e-7 is within the error of the computation itself."""
from __future__ import annotations

import pytest
import torch

from harp_plugin.bounds.engine import BoundResult


def verdict(lower: list[float], upper: list[float], dtype: torch.dtype) -> bool:
    result = BoundResult(torch.tensor([lower], dtype=dtype), torch.tensor([upper], dtype=dtype), method="ibp")
    return bool(result.certified().item())


@pytest.mark.parametrize(
    ("lower", "upper", "dtype", "expected"),
    [
        # scale 1 + 2 = 3; float32 allowance 128 · 1.19e-7 · 3 ≈ 4.6e-5
        ([1e-7, 1.0], [1.0, 2.0], torch.float32, False),
        ([4e-5, 1.0], [1.0, 2.0], torch.float32, False),
        ([5e-5, 1.0], [1.0, 2.0], torch.float32, True),
        ([0.0, 1.0], [1.0, 2.0], torch.float32, False),
        # float64 allowance 128 · 2.2e-16 · 3 ≈ 8.5e-14: 1e-7 is a real margin there
        ([1e-7, 1.0], [1.0, 2.0], torch.float64, True),
        ([1e-14, 1.0], [1.0, 2.0], torch.float64, False),
        # the scale follows the largest |bound| of the sample: 1 + 1000 → allowance ≈ 1.5e-2
        ([1e-2, 5.0], [1000.0, 6.0], torch.float32, False),
        ([2e-2, 5.0], [1000.0, 6.0], torch.float32, True),
    ],
)
def test_margin_must_clear_the_rounding_allowance(lower, upper, dtype, expected) -> None:
    assert verdict(lower, upper, dtype) is expected


def test_each_sample_is_judged_on_its_own_scale() -> None:
    lower = torch.tensor([[1e-3, 1.0], [1e-3, 1.0]])
    upper = torch.tensor([[1.0, 2.0], [1.0, 200.0]])   # allowances ≈ 4.6e-5 and ≈ 3.1e-3
    assert BoundResult(lower, upper, method="ibp").certified().tolist() == [True, False]
