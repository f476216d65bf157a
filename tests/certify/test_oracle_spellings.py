"""Every supported way of writing an operation is bounded as the operation it computes.

The engine reads each traced call's arguments (positional, keyword, method or function,
module or functional form). Each case below is one call on a 4-D input, flattened to the
output, and its bounds are checked against the exact range found without the engine:

* an affine case is one affine map of the box, so its exact range is J·c + b ± |J|·r with J
  read off torch's own forward on the basis images; IBP (the specification is folded
  through affine nodes), CROWN-IBP and CROWN must all equal it;
* a piecewise-linear or max-pooling case is non-decreasing in every input, so its exact
  range is [f(lower corner), f(upper corner)], and every method (intersected) must equal it.

A misread argument (keepdim, a default slope, a stride, the order of ``1 - x``) changes the
function the engine bounds, so its bounds stop being the exact range.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from certify_nets import randomise_batch_norm
from harp_plugin.bounds import compute_bounds
from harp_plugin.bounds.engine import unstable_mask
from harp_plugin.bounds.operators.activation import PiecewiseLinearOp
from harp_plugin.bounds.operators.op_map import supported_operations
from harp_plugin.models.normalization import InputNormalization

METHODS = ("ibp", "crown-ibp", "crown")
X = torch.rand(2, 2, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
EPS = 0.1
CHANNEL = torch.tensor([1.5, -0.5], dtype=torch.float64).view(1, 2, 1, 1)
MATRIX = torch.linspace(-1, 1, 15, dtype=torch.float64).view(5, 3)
WEIGHT = torch.linspace(-0.5, 1, 120, dtype=torch.float64).view(3, 40)


class Flat(nn.Module):
    """``function(x)`` flattened to (batch, features), optionally after a module."""

    def __init__(self, function, module: nn.Module | None = None) -> None:
        super().__init__()
        self.function, self.module = function, module if module is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.function(self.module(x)), 1)


def module_case(module: nn.Module) -> Flat:
    torch.manual_seed(1)
    module = module.double().eval()
    randomise_batch_norm(module, torch.Generator().manual_seed(2))
    return Flat(lambda y: y, module)


# factories: each test builds its own model, so no cached trace of an earlier call is reused
AFFINE = {
    "mean dim=": lambda: Flat(lambda x: x.mean(dim=2)),
    "mean (dims), keepdim positional": lambda: Flat(lambda x: x.mean((2, 3), True)),
    "torch.mean negative dim": lambda: Flat(lambda x: torch.mean(x, -1)),
    "torch.mean dim=[..], keepdim=": lambda: Flat(lambda x: torch.mean(x, dim=[1, 3], keepdim=True)),
    "avg_pool2d options": lambda: Flat(lambda x: F.avg_pool2d(x, 2, stride=1, padding=1, ceil_mode=True,
                                                       count_include_pad=False)),
    "avg_pool2d divisor_override": lambda: Flat(lambda x: F.avg_pool2d(x, (2, 3), divisor_override=4)),
    "adaptive_avg_pool2d": lambda: Flat(lambda x: F.adaptive_avg_pool2d(x, (3, 2))),
    "avg_pool1d": lambda: Flat(lambda x: F.avg_pool1d(x.flatten(2), 3, 2)),
    "adaptive_avg_pool1d": lambda: Flat(lambda x: F.adaptive_avg_pool1d(x.flatten(2), 6)),
    "F.linear without bias": lambda: Flat(lambda x: F.linear(x.flatten(1), WEIGHT)),
    "x @ M": lambda: Flat(lambda x: x @ MATRIX),
    "torch.matmul": lambda: Flat(lambda x: torch.matmul(x, MATRIX)),
    "x.matmul": lambda: Flat(lambda x: x.matmul(MATRIX)),
    "x + c, c + x": lambda: Flat(lambda x: 0.25 + (x + 0.3)),
    "torch.add / x.add by a channel constant": lambda: Flat(lambda x: torch.add(x, CHANNEL).add(CHANNEL)),
    "1 - x": lambda: Flat(lambda x: 1.0 - x),
    "torch.sub / x.sub / other=": lambda: Flat(lambda x: torch.sub(x, CHANNEL).sub(other=0.5)),
    "c * x, x * c": lambda: Flat(lambda x: -2.5 * (x * CHANNEL)),
    "torch.mul / x.mul": lambda: Flat(lambda x: torch.mul(CHANNEL, x).mul(-1.5)),
    "x / c": lambda: Flat(lambda x: x / -3.0),
    "torch.div / x.div by a channel constant": lambda: Flat(lambda x: torch.div(x, CHANNEL).div(2.0)),
    "-x, torch.neg, x.neg": lambda: Flat(lambda x: torch.neg(-x).neg()),
    "x + 2x (two bounded operands)": lambda: Flat(lambda x: x + 2 * x),
    "torch.add(x, x)": lambda: Flat(lambda x: torch.add(x, x * 0.5)),
    "view / reshape": lambda: Flat(lambda x: x.view(-1, 8, 5).reshape(-1, 5, 8)),
    "torch.reshape": lambda: Flat(lambda x: torch.reshape(x, (-1, 40))),
    "permute / torch.permute": lambda: Flat(lambda x: torch.permute(x.permute(0, 3, 1, 2), (0, 2, 3, 1))),
    "transpose / torch.transpose": lambda: Flat(lambda x: torch.transpose(x.transpose(1, 3), 2, 3)),
    "unsqueeze / squeeze": lambda: Flat(lambda x: torch.squeeze(torch.unsqueeze(x.unsqueeze(2).squeeze(2), -1), -1)),
    "movedim": lambda: Flat(lambda x: torch.movedim(x.movedim(1, -1), 3, 2)),
    "flatten(start, end)": lambda: Flat(lambda x: torch.flatten(x, 1, 2).flatten(2)),
    "contiguous": lambda: Flat(lambda x: x.transpose(2, 3).contiguous()),
    "cat dim=1": lambda: Flat(lambda x: torch.cat([x, 2 * x], dim=1)),
    "cat dim=-1": lambda: Flat(lambda x: torch.cat((x, -x), -1)),
    "concat tensors=": lambda: Flat(lambda x: torch.concat(tensors=[x, x + 1], dim=2)),
    "dropout (eval)": lambda: Flat(lambda x: F.dropout(x, 0.3, False)),
    "Flatten / Unflatten": lambda: module_case(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (5, 8)))),
    "Linear on the last dimension": lambda: module_case(nn.Linear(5, 3)),
    "Conv2d padding='same', dilation": lambda: module_case(nn.Conv2d(2, 3, 3, padding="same", dilation=2)),
    "Conv2d stride, groups, no bias": lambda: module_case(nn.Conv2d(2, 4, (2, 3), stride=(2, 1), groups=2, bias=False)),
    "Conv1d": lambda: module_case(nn.Sequential(nn.Flatten(2), nn.Conv1d(2, 3, 4, stride=3, padding=2))),
    "BatchNorm2d (eval)": lambda: module_case(nn.BatchNorm2d(2)),
    "BatchNorm1d (eval)": lambda: module_case(nn.Sequential(nn.Flatten(2), nn.BatchNorm1d(2))),
    "InputNormalization": lambda: module_case(InputNormalization([0.2, 0.6], [0.5, 0.25])),
    "AvgPool2d / AdaptiveAvgPool2d": lambda: module_case(nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.AdaptiveAvgPool2d(2))),
    "AvgPool1d / AdaptiveAvgPool1d": lambda: module_case(nn.Sequential(nn.Flatten(2), nn.AvgPool1d(4, 2),
                                                               nn.AdaptiveAvgPool1d(3))),
    "Identity / Dropout": lambda: module_case(nn.Sequential(nn.Identity(), nn.Dropout(0.5), nn.Dropout2d(0.5))),
}

MONOTONE = {
    "relu forms": lambda: Flat(lambda x: torch.relu(x - 0.5) + F.relu(x - 0.6) + (x - 0.3).relu()),
    "relu6": lambda: Flat(lambda x: F.relu6(10 * x - 2)),
    "hardtanh positional": lambda: Flat(lambda x: F.hardtanh(2 * x - 1, -0.5, 0.5)),
    "hardtanh keywords": lambda: Flat(lambda x: F.hardtanh(x, min_val=0.2, max_val=0.7)),
    "hardtanh defaults": lambda: Flat(lambda x: F.hardtanh(4 * x - 2)),
    "leaky_relu positional slope": lambda: Flat(lambda x: F.leaky_relu(x - 0.5, 0.2)),
    "leaky_relu negative_slope=": lambda: Flat(lambda x: F.leaky_relu(x - 0.5, negative_slope=0.3)),
    "leaky_relu default slope": lambda: Flat(lambda x: F.leaky_relu(40 * x - 20)),
    "max_pool2d kernel only": lambda: Flat(lambda x: F.max_pool2d(x, 2)),
    "max_pool2d positional stride, padding": lambda: Flat(lambda x: F.max_pool2d(x, 3, 2, 1)),
    "max_pool2d keywords, ceil_mode": lambda: Flat(lambda x: F.max_pool2d(x, kernel_size=2, stride=1, padding=1,
                                                                   ceil_mode=True)),
    "max_pool2d dilation": lambda: Flat(lambda x: F.max_pool2d(x, 2, dilation=2)),
    "max_pool1d": lambda: Flat(lambda x: F.max_pool1d(x.flatten(2), 3, 2, 1)),
    "ReLU / ReLU6 / Hardtanh / LeakyReLU modules": lambda: module_case(nn.Sequential(
        nn.ReLU(), nn.ReLU6(), nn.Hardtanh(0.1, 0.6), nn.LeakyReLU(0.1))),
    "MaxPool2d / MaxPool1d modules": lambda: module_case(nn.Sequential(
        nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.Flatten(2), nn.MaxPool1d(2))),
}


def box() -> tuple[torch.Tensor, torch.Tensor]:
    return (X - EPS).clamp(min=0), (X + EPS).clamp(max=1)


def affine_range(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact range of an affine model over the box: J·c + b ± |J|·r, J from basis images."""
    low, high = box()
    size = X[0].numel()
    with torch.no_grad():
        offset = model(torch.zeros(1, *X.shape[1:], dtype=torch.float64))
        jacobian = (model(torch.eye(size, dtype=torch.float64).view(size, *X.shape[1:])) - offset).t()
    centre, radius = ((high + low) / 2).flatten(1), ((high - low) / 2).flatten(1)
    middle = centre @ jacobian.t() + offset
    spread = radius @ jacobian.abs().t()
    return middle - spread, middle + spread


@pytest.mark.parametrize("name", AFFINE)
def test_affine_spellings_are_bounded_exactly(name: str) -> None:
    model = AFFINE[name]()
    low, high = affine_range(model)
    assert bool((high - low > 1e-6).any()), "the case depends on its input"
    for method in METHODS:
        for intersect in (True, False):
            bounds = compute_bounds(model, X, EPS, method=method, intersect=intersect)
            torch.testing.assert_close(bounds.lower, low, atol=1e-9, rtol=0, msg=f"{method} lower")
            torch.testing.assert_close(bounds.upper, high, atol=1e-9, rtol=0, msg=f"{method} upper")


@pytest.mark.parametrize("name", MONOTONE)
def test_monotone_spellings_are_bounded_by_their_corners(name: str) -> None:
    model = MONOTONE[name]()
    low_corner, high_corner = box()
    with torch.no_grad():
        low, high = model(low_corner), model(high_corner)
    assert bool((high - low > 1e-6).any()), "the case depends on its input"
    for method in METHODS:
        bounds = compute_bounds(model, X, EPS, method=method)
        torch.testing.assert_close(bounds.lower, low, atol=1e-9, rtol=0, msg=f"{method} lower")
        torch.testing.assert_close(bounds.upper, high, atol=1e-9, rtol=0, msg=f"{method} upper")


def test_leaky_relu_slopes_at_the_ends_are_bounded_and_outside_them_refused() -> None:
    model = Flat(lambda x: F.leaky_relu(x - 0.5, 0.0) + F.leaky_relu(x - 0.5, 1.0))
    low_corner, high_corner = box()
    bounds = compute_bounds(model, X, EPS, method="crown")
    with torch.no_grad():
        torch.testing.assert_close(bounds.lower, model(low_corner), atol=1e-9, rtol=0)
    with pytest.raises(Exception, match=r"LeakyReLU negative_slope=1\.5 is outside \[0, 1\] \(not monotone-convex\)"):
        compute_bounds(Flat(lambda x: F.leaky_relu(x, 1.5)), X, EPS)


# ---------------------------------------------------------------- the relaxations themselves

HARDTANH = PiecewiseLinearOp(lambda x: x.clamp(-1.0, 1.0), [-1.0, 1.0])


@pytest.mark.parametrize("low, high, inexact, lines", [
    # crossing both breakpoints: chord x/2, gaps ∓½ at the breakpoints (worked out in test_oracle_operators)
    (-2.0, 2.0, True, (0.5, -0.5, 0.5, 0.5)),
    # inside one linear piece: the function itself, both lines exact
    (0.2, 0.6, False, (1.0, 0.0, 1.0, 0.0)),
    # ending on a breakpoint is still one piece; so is a point
    (-1.0, 0.5, False, (1.0, 0.0, 1.0, 0.0)),
    (0.5, 1.0, False, (1.0, 0.0, 1.0, 0.0)),
    (0.3, 0.3, False, (0.0, 0.3, 0.0, 0.3)),
    # flat piece below −1, and one breakpoint crossed: chord from (−1.5, −1) to (0, 0), slope ⅔,
    # intercept 0; gap at −1: −1 − (−⅔) = −⅓
    (-3.0, -1.5, False, (0.0, -1.0, 0.0, -1.0)),
    (-1.5, 0.0, True, (2 / 3, -1 / 3, 2 / 3, 0.0)),
])
def test_piecewise_linear_lines_and_inexact_neurons_by_hand(low, high, inexact, lines) -> None:
    lower, upper = torch.tensor([[low]], dtype=torch.float64), torch.tensor([[high]], dtype=torch.float64)
    assert HARDTANH.inexact(lower, upper).tolist() == [[inexact]]
    got = tuple(t.item() for t in HARDTANH.lines(lower, upper))
    assert got == pytest.approx(lines, abs=1e-12)


# ---------------------------------------------------------------- what the engine refuses or names

def test_constants_that_differ_per_sample_or_broadcast_the_input_are_refused() -> None:
    per_sample = torch.ones(2, 2, 4, 5, dtype=torch.float64)
    with pytest.raises(Exception, match="a constant that differs per sample is not supported"):
        compute_bounds(Flat(lambda x: x + per_sample), X, EPS)
    wider = torch.ones(3, 1, 1, 1, 1, dtype=torch.float64)
    with pytest.raises(Exception, match=r"a constant of shape \(3, 1, 1, 1, 1\) would broadcast the bounded "
                                        r"tensor \(2, 2, 4, 5\)"):
        compute_bounds(Flat(lambda x: x * wider), X, EPS)


def test_supported_operations_are_named_as_users_write_them() -> None:
    names = set(supported_operations())
    assert {"Conv2d", "Flatten", "F.relu", "F.max_pool2d", "operator.add", "operator.matmul", "torch.cat",
            "Tensor.view", "Tensor.mean"} <= names


@pytest.mark.parametrize("low, high, unstable", [
    (-2e-5, 2e-5, True), (-1e-5, 1.0, False), (-1.0, 1e-5, False), (-1e-6, 1e-6, False), (0.0, 1.0, False),
])
def test_a_relu_is_unstable_only_beyond_the_tolerance_on_both_sides(low, high, unstable) -> None:
    """UNSTABLE_TOLERANCE = 1e-5: l < −tol and u > tol, strictly."""
    mask = unstable_mask(torch.tensor([low], dtype=torch.float64), torch.tensor([high], dtype=torch.float64))
    assert mask.tolist() == [unstable]
