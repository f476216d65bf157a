"""Property test: no point of the ε-ball (corners, random points, PGD-pushed points) leaves
the bounds, for IBP, CROWN-IBP and CROWN, on sequential and residual, pruned and masked nets."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from certify_nets import mask_weights, prune_channels, residual_net, sequential_net, traced_net
from harp_plugin.bounds import compute_bounds, margin_matrix

TOL = 1e-4
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


def ball_points(x: torch.Tensor, eps: float, seed: int, count: int = 48) -> torch.Tensor:
    """Random corners, uniform points and the centre of each sample's clipped ball: (B, count, ...)."""
    generator = torch.Generator().manual_seed(seed)
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    shape = (x.shape[0], count, *x.shape[1:])
    corners = torch.randint(0, 2, shape, generator=generator).float()
    uniform = torch.rand(shape, generator=generator)
    pick = torch.cat([corners[:, : count // 2], uniform[:, count // 2:]], dim=1)
    points = lower.unsqueeze(1) + pick * (upper - lower).unsqueeze(1)
    return torch.cat([x.unsqueeze(1), points], dim=1)


def pgd_points(model: nn.Module, x: torch.Tensor, eps: float, steps: int = 8) -> torch.Tensor:
    """Points pushed toward each output's extremes by signed-gradient steps: (B, 2·outputs, ...)."""
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    outputs = model(x).shape[1]
    found = []
    for direction in (1.0, -1.0):
        for k in range(outputs):
            z = x.clone()
            for _ in range(steps):
                z.requires_grad_(True)
                (grad,) = torch.autograd.grad(model(z)[:, k].sum() * direction, z)
                z = torch.max(torch.min(z.detach() + 0.5 * eps * grad.sign(), upper), lower)
            found.append(z)
    return torch.stack(found, dim=1)


def assert_sound(model: nn.Module, x: torch.Tensor, eps: float, seed: int) -> None:
    points = torch.cat([ball_points(x, eps, seed), pgd_points(model, x, eps)], dim=1)
    batch, count = points.shape[:2]
    with torch.no_grad():
        logits = model(points.flatten(0, 1)).view(batch, count, -1)
    classes = logits.shape[-1]
    y = torch.arange(batch) % classes
    margins = torch.einsum("bkn,bpn->bpk", margin_matrix(y, classes), logits)
    widths = {}
    for method in ("ibp", "crown-ibp", "crown"):
        with torch.no_grad():
            out = compute_bounds(model, x, eps, method=method)
            spec = compute_bounds(model, x, eps, method=method, y=y)
        for name, values, bounds in (("logit", logits, out), ("margin", margins, spec)):
            below = (bounds.lower.unsqueeze(1) - values).max().item()
            above = (values - bounds.upper.unsqueeze(1)).max().item()
            assert below <= TOL and above <= TOL, f"{method} {name} bound violated by {max(below, above):.3g}"
        widths[method] = (out.upper - out.lower, spec.lower)
    for method in ("crown", "crown-ibp"):
        assert (widths[method][0] <= widths["ibp"][0] + TOL).all(), f"{method} looser than IBP on an output"
        assert (widths[method][1] >= widths["ibp"][1] - TOL).all(), f"{method} margin looser than IBP"


def inputs(seed: int, batch: int = 3, channels: int = 2, size: int = 8) -> torch.Tensor:
    # some pixels at the range ends, so the clipping of the box is exercised
    x = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))
    return torch.where(x < 0.1, torch.zeros_like(x), torch.where(x > 0.9, torch.ones_like(x), x))


eps_values = st.sampled_from([0.0, 0.005, 0.02, 0.08])


@SETTINGS
@given(seed=st.integers(0, 10_000), eps=eps_values, stride=st.sampled_from([1, 2]), dilation=st.sampled_from([1, 2]),
       groups=st.sampled_from([1, 2]), pool=st.sampled_from(["avg", "adaptive", "none"]))
def test_sequential_sound(seed: int, eps: float, stride: int, dilation: int, groups: int, pool: str) -> None:
    model = sequential_net(seed, stride=stride, dilation=dilation, groups=groups, pool=pool)
    assert_sound(model, inputs(seed), eps, seed)


@SETTINGS
@given(seed=st.integers(0, 10_000), eps=eps_values, projection=st.booleans())
def test_residual_sound(seed: int, eps: float, projection: bool) -> None:
    assert_sound(residual_net(seed, projection=projection), inputs(seed), eps, seed)


@SETTINGS
@given(seed=st.integers(0, 10_000), eps=eps_values, residual=st.booleans())
def test_pruned_sound(seed: int, eps: float, residual: bool) -> None:
    x = inputs(seed)
    model = residual_net(seed) if residual else sequential_net(seed)
    before = sum(p.numel() for p in model.parameters())
    prune_channels(model, x[:1])
    assert sum(p.numel() for p in model.parameters()) < before
    assert_sound(model, x, eps, seed)


@SETTINGS
@given(seed=st.integers(0, 10_000), eps=eps_values, residual=st.booleans(), carrier=st.sampled_from(["prune", "parametrize"]))
def test_masked_sound(seed: int, eps: float, residual: bool, carrier: str) -> None:
    model = mask_weights(residual_net(seed) if residual else sequential_net(seed), seed, carrier)
    assert_sound(model, inputs(seed), eps, seed)


def test_zero_radius_bounds_equal_the_forward_pass() -> None:
    torch.manual_seed(0)
    for model in (sequential_net(1, pool="adaptive"), residual_net(2), mask_weights(sequential_net(3), 3, "prune")):
        x = inputs(4)
        with torch.no_grad():
            expected = model(x)
            for method in ("ibp", "crown"):
                bounds = compute_bounds(model, x, 0.0, method=method)
                torch.testing.assert_close(bounds.lower, expected, atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(bounds.upper, expected, atol=1e-4, rtol=1e-4)


@SETTINGS
@given(seed=st.integers(0, 10_000), eps=eps_values, kind=st.sampled_from(["residual", "branches"]),
       overlap=st.booleans())
def test_traced_graphs_sound(seed: int, eps: float, kind: str, overlap: bool) -> None:
    """Hand-written forwards: x + body(x), torch.cat, max/avg pooling (overlapping windows too),
    .view/permute/transpose, mean, matmul by a constant, LeakyReLU/ReLU6/Hardtanh."""
    model = traced_net(kind, seed, **({"overlap": overlap} if kind == "residual" else {}))
    assert_sound(model, inputs(seed), eps, seed)
