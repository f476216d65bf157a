"""Numerics: float64 on request, memory-budget chunking that changes nothing but memory
(TF32 off while bounding: tests/certify/test_exact_float32.py)."""
from __future__ import annotations

import pytest
import torch

from certify_nets import residual_net, sequential_net, traced_net
from harp_plugin.bounds import compute_bounds


def test_float64_bounds_contain_the_float64_forward_and_match_float32() -> None:
    model = residual_net(5)
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    for method in ("ibp", "crown"):
        single = compute_bounds(model, x, 0.01, method=method)
        double = compute_bounds(model, x, 0.01, method=method, dtype=torch.float64)
        assert double.lower.dtype == torch.float64 and next(model.parameters()).dtype == torch.float32
        torch.testing.assert_close(double.lower.float(), single.lower, atol=1e-4, rtol=1e-4)
        exact = compute_bounds(model, x, 0.0, method=method, dtype=torch.float64)
        centre = model.double()(x.double()).detach()
        model.float()
        torch.testing.assert_close(exact.lower, centre, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("method", ["crown", "crown-ibp"])
@pytest.mark.parametrize("build", [lambda: sequential_net(6), lambda: traced_net("residual", 6)])
def test_memory_budget_changes_chunking_not_bounds(build, method: str) -> None:
    """A budget of a few kilobytes forces one sample and one neuron per back-substitution
    (and one sample per chunk of the output pass); the bounds must equal those of one
    unchunked pass."""
    model = build()
    x = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(6))
    roomy = compute_bounds(model, x, 0.03, method=method, memory_budget=2**30)
    tight = compute_bounds(model, x, 0.03, method=method, memory_budget=2**12)
    torch.testing.assert_close(tight.lower, roomy.lower, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(tight.upper, roomy.upper, atol=1e-6, rtol=1e-6)
