"""Every operator family of the bound engine checked against answers found without it.

* Convolutions, BatchNorm, input normalisation, pooling, ``mean``, rearrangements and
  arithmetic by constants: a net of ReLU-separated segments is rewritten as a dense MLP, each
  segment's matrix read off torch's own forward on the basis vectors, and the engine's IBP,
  CROWN-IBP and CROWN bounds must equal ``reference_bounds.py``'s on that MLP. The segments
  are chosen so the two nets have the same IBP (one non-element-wise map per hidden segment;
  element-wise maps keep centre/radius arithmetic exact), so equality is the expected answer.
* Residual sums and differences, ``cat``, max pooling and the piecewise-linear activations:
  1-D nets whose exact range, IBP bound and CROWN bound are worked out in the docstrings.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from certify_nets import randomise_batch_norm
from harp_plugin.bounds import compute_bounds
from harp_plugin.models.normalization import InputNormalization
from reference_bounds import ReferenceBounds

METHODS = ("ibp", "crown-ibp", "crown")


class Lambda(nn.Module):
    """A traced-through piece of forward code (the engine bounds its calls one by one)."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


def dense(segment: nn.Module, in_shape: tuple[int, ...]) -> nn.Linear:
    """The affine map of a ReLU-free segment as a Linear layer: W e_i = f(e_i) − f(0), b = f(0)."""
    size = torch.Size(in_shape).numel()
    with torch.no_grad():
        zero = segment(torch.zeros(1, *in_shape, dtype=torch.float64)).flatten(1)
        images = segment(torch.eye(size, dtype=torch.float64).view(size, *in_shape)).flatten(1)
    layer = nn.Linear(size, zero.shape[1]).double()
    with torch.no_grad():
        layer.weight.copy_((images - zero).t())
        layer.bias.copy_(zero[0])
    return layer


def as_mlp(segments: list[nn.Module], in_shape: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    shape = in_shape
    for segment in segments:
        layers += [dense(segment, shape), nn.ReLU()]
        with torch.no_grad():
            shape = tuple(segment(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    return nn.Sequential(*layers[:-1])


def conv2d_segments() -> list[nn.Module]:
    """normalise → strided conv → BN | grouped dilated conv → ×(per-channel, some < 0) − shift |
    avg pool (padding, ceil mode) | adaptive avg pool (overlapping bins) → ÷(−2) |
    permute → flatten → linear."""
    torch.manual_seed(0)
    signs = torch.tensor([1.5, -0.5, 2.0, -1.0], dtype=torch.float64).view(1, 4, 1, 1)
    segments = [
        nn.Sequential(InputNormalization([0.4, 0.5], [0.3, 0.2]), nn.Conv2d(2, 4, 3, stride=2, padding=1),
                      nn.BatchNorm2d(4)),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), Lambda(lambda x: x * signs - 0.1)),
        nn.Sequential(nn.AvgPool2d(2, stride=1, padding=1, ceil_mode=True, count_include_pad=False)),
        nn.Sequential(nn.AdaptiveAvgPool2d(3), Lambda(lambda x: (x - 0.05) / -2.0)),
        nn.Sequential(Lambda(lambda x: x.permute(0, 2, 3, 1)), nn.Flatten(), nn.Linear(36, 3)),
    ]
    randomise_batch_norm(nn.Sequential(*segments), torch.Generator().manual_seed(1))
    return segments


def conv1d_segments() -> list[nn.Module]:
    """conv1d (padding 'same') → BN | conv1d ('valid', stride 2) → neg | mean over length | linear."""
    torch.manual_seed(2)
    weight, bias = torch.linspace(-1, 1, 12, dtype=torch.float64).view(3, 4), torch.tensor([0.1, -0.2, 0.3]).double()
    segments = [
        nn.Sequential(nn.Conv1d(2, 3, 3, padding="same"), nn.BatchNorm1d(3)),
        nn.Sequential(nn.Conv1d(3, 4, 2, stride=2, padding="valid"), Lambda(torch.neg)),
        nn.Sequential(Lambda(lambda x: x.mean(2, keepdim=True)), Lambda(lambda x: x.transpose(1, 2))),
        nn.Sequential(nn.Flatten(), Lambda(lambda x: F.linear(x, weight, bias))),
    ]
    randomise_batch_norm(nn.Sequential(*segments), torch.Generator().manual_seed(3))
    return segments


def relu_net(segments: list[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for segment in segments:
        layers += [segment, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


@pytest.mark.parametrize("build, in_shape", [(conv2d_segments, (2, 5, 5)), (conv1d_segments, (2, 6))],
                         ids=["conv2d", "conv1d"])
@pytest.mark.parametrize("intersect", [True, False])
def test_conv_nets_bound_like_their_dense_twin(build, in_shape: tuple[int, ...], intersect: bool) -> None:
    segments = build()
    model = relu_net(segments)
    mlp = as_mlp([s.double().eval() for s in segments], in_shape)
    x = torch.rand(2, *in_shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), mlp(x.flatten(1)))  # the twin computes the same function
    eps = 0.08
    C = torch.eye(3, dtype=torch.float64)
    for method in METHODS:
        bounds = compute_bounds(model, x, eps, method=method, intersect=intersect)
        for i in range(x.shape[0]):
            box = ((x[i] - eps).clamp(min=0).flatten(), (x[i] + eps).clamp(max=1).flatten())
            reference = ReferenceBounds(mlp, *box, method, intersect)
            low, high = reference.output(C, method, intersect)
            torch.testing.assert_close(bounds.lower[i], low, atol=1e-9, rtol=0, msg=method)
            torch.testing.assert_close(bounds.upper[i], high, atol=1e-9, rtol=0, msg=method)
            assert bool((high - low > 1e-6).all()), "the net is not degenerate: the bounds have width"
    unstable = ReferenceBounds(mlp, *box, "ibp", False).pre
    assert any(bool(((l < 0) & (u > 0)).any()) for l, u in unstable), "some ReLU is unstable (CROWN relaxes it)"


# ---------------------------------------------------------------- hand-computed 1-D nets

ONE_MINUS_ONE = torch.tensor([[1.0, -1.0]], dtype=torch.float64)

def bounds_of(function, low: float, high: float, method: str, intersect: bool = True) -> tuple[float, float]:
    """Bounds of ``function`` over x ∈ [low, high] (one scalar input)."""
    centre = torch.tensor([[(low + high) / 2]], dtype=torch.float64)
    result = compute_bounds(Lambda(function), centre, (high - low) / 2, method=method, lower=low, upper=high,
                            intersect=intersect)
    return result.lower.item(), result.upper.item()


@pytest.mark.parametrize("function, box, ibp, crown", [
    # x − relu(x) = min(x, 0) on [−1, 1]: exact [−1, 0]. IBP: [−1, 1] − [0, 1] = [−2, 1]. CROWN: relu
    # under its chord (x + 1)/2 and above 0 (u > −l fails at a tie), so f ∈ [x/2 − ½, x] ⊂ [−1, 1].
    (lambda x: x - torch.relu(x), (-1.0, 1.0), (-2.0, 1.0), (-1.0, 1.0)),
    # the same through cat: [x, relu(x)] · (1, −1)
    (lambda x: F.linear(torch.cat([x, torch.relu(x)], 1), ONE_MINUS_ONE),
     (-1.0, 1.0), (-2.0, 1.0), (-1.0, 1.0)),
    # relu(x) + relu(−x) = |x| on [−1, 2]: IBP [0, 2] + [0, 1] = [0, 3]; CROWN: chords (2x + 2)/3 and
    # (2 − x)/3 sum to (x + 4)/3 ≤ 2; lower lines x (2 > 1) and 0 (1 > 2 fails): f ≥ x ≥ −1
    # (raw CROWN; intersected with IBP the lower bound is 0).
    (lambda x: torch.relu(x) + torch.relu(-x), (-1.0, 2.0), (0.0, 3.0), (-1.0, 2.0)),
    # hardtanh(x) − x/2 on [−2, 2]: exact [−½, ½]. Chord x/2; largest gaps at the breakpoints ∓1
    # are ∓½, so hardtanh ∈ [x/2 − ½, x/2 + ½]: CROWN exact. IBP: [−1, 1] + [−1, 1].
    (lambda x: F.hardtanh(x) - 0.5 * x, (-2.0, 2.0), (-2.0, 2.0), (-0.5, 0.5)),
    # leaky_relu(x, 0.1) − 0.55x on [−1, 1]: exact [0, 0.45]. Chord 0.55x + 0.45 touches at both
    # ends, gap −0.45 at 0: lower line 0.55x. IBP: [−0.1, 1] + [−0.55, 0.55].
    (lambda x: F.leaky_relu(x, 0.1) - x * 0.55, (-1.0, 1.0), (-0.65, 1.55), (0.0, 0.45)),
    # relu6(x) − ¾x on [−2, 6]: chord ¾x + 1.5, gaps 0 at the ends and −1.5 at 0: lower line ¾x,
    # so f ∈ [0, 1.5] (exact: x ≤ 0 gives −¾x ≤ 1.5, x ∈ [0, 6] gives x/4 ≤ 1.5). IBP: [0, 6] + [−4.5, 1.5].
    (lambda x: F.relu6(x) - 0.75 * x, (-2.0, 6.0), (-4.5, 7.5), (0.0, 1.5)),
    # max(x, x + 2) − x ≡ 2: the window is decided (l = 2 ≥ u = 1), so CROWN is exact. IBP: [2, 3] − [0, 1].
    (lambda x: F.max_pool1d(torch.cat([x, x + 2], 1).unsqueeze(1), 2).flatten(1) - x, (0.0, 1.0),
     (1.0, 3.0), (2.0, 2.0)),
    # max(x, 1 − x) − x on [0, 1]: exact [0, 1]. Undecided window, tied lower and upper ends:
    # j* = the first element, max ≥ x gives f ≥ 0, max ≤ 1 gives f ≤ 1 − x ≤ 1. IBP: [0, 1] − [0, 1].
    (lambda x: F.max_pool1d(torch.cat([x, 1 - x], 1).unsqueeze(1), 2).flatten(1) - x, (0.0, 1.0),
     (-1.0, 1.0), (0.0, 1.0)),
], ids=["residual-sub", "cat", "abs", "hardtanh", "leaky-relu", "relu6", "max-decided", "max-undecided"])
def test_hand_computed_bounds(function, box, ibp, crown) -> None:
    """``crown`` is the raw CROWN bound; the default (intersected) one is its meet with IBP."""
    assert bounds_of(function, *box, "ibp") == pytest.approx(ibp, abs=1e-12)
    assert bounds_of(function, *box, "crown", intersect=False) == pytest.approx(crown, abs=1e-12)
    met = (max(ibp[0], crown[0]), min(ibp[1], crown[1]))
    assert bounds_of(function, *box, "crown") == pytest.approx(met, abs=1e-12)
    grid = torch.linspace(*box, 2001, dtype=torch.float64).view(-1, 1)
    with torch.no_grad():
        values = function(grid).flatten()
    low, high = values.min().item(), values.max().item()
    assert crown[0] - 1e-12 <= low and high <= crown[1] + 1e-12


# ---------------------------------------------------------------- max pooling's CROWN relaxation, looped by hand

def max_pool_crown_lower(low: torch.Tensor, high: torch.Tensor, rows: torch.Tensor, pool: dict) -> torch.Tensor:
    """Raw CROWN lower bound of rows·flatten(max_pool2d(x)) over the box [low, high] (one sample,
    shape (C, H, W)), the relaxation applied window by window in plain loops: max ≥ x_j* with j*
    the largest lower end (ties: the largest upper end, then the first); max ≤ x_j* when l_j* is
    at least every other upper end, else max ≤ the window's largest upper end."""
    channels, height, width = low.shape
    kernel, stride, padding, dilation = pool["kernel_size"], pool["stride"], pool["padding"], pool["dilation"]
    out_h, out_w = F.max_pool2d(low.unsqueeze(0), **pool).shape[2:]
    coefficients = torch.zeros(rows.shape[0], channels, height, width, dtype=low.dtype)
    constant = torch.zeros(rows.shape[0], dtype=low.dtype)
    for c in range(channels):
        for oh in range(out_h):
            for ow in range(out_w):
                window = [(oh * stride - padding + dilation * a, ow * stride - padding + dilation * b)
                          for a in range(kernel) for b in range(kernel)]
                window = [(r, q) for r, q in window if 0 <= r < height and 0 <= q < width]
                best = max(window, key=lambda p: (low[c, p[0], p[1]].item(), high[c, p[0], p[1]].item(),
                                                  -window.index(p)))
                others = [high[c, r, q].item() for r, q in window if (r, q) != best]
                decided = not others or low[c, best[0], best[1]].item() >= max(others)
                top = max(high[c, r, q].item() for r, q in window)
                weights = rows[:, (c * out_h + oh) * out_w + ow]
                for k, w in enumerate(weights.tolist()):
                    if w > 0 or decided:
                        coefficients[k, c, best[0], best[1]] += w
                    else:
                        constant[k] += w * top
    flat = coefficients.flatten(1)
    return constant + flat.clamp(min=0) @ low.flatten() + flat.clamp(max=0) @ high.flatten()


@pytest.mark.parametrize("pool", [
    dict(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False),
    dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True),
    dict(kernel_size=2, stride=1, padding=1, dilation=2, ceil_mode=False),
], ids=["plain", "padded-ceil", "dilated"])
@pytest.mark.parametrize("head", ["linear", "conv"])
def test_max_pool_crown_equals_the_relaxation_looped_by_hand(pool: dict, head: str) -> None:
    """A max pool under a linear head, or under a conv (coefficients arrive as patches), then a
    linear map; the head is folded into one matrix from torch's forward on basis images."""
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 2).double()
    channels_out = F.max_pool2d(torch.zeros(1, 2, 6, 6), **pool).shape
    after = conv(torch.zeros(1, *channels_out[1:], dtype=torch.float64)) if head == "conv" else None
    features = (after if after is not None else torch.zeros(channels_out)).flatten(1).shape[1]
    linear = nn.Linear(features, 3).double()
    body = nn.Sequential(conv, nn.Flatten(), linear) if head == "conv" else nn.Sequential(nn.Flatten(), linear)
    model = Lambda(lambda x: body(F.max_pool2d(x, **pool)))
    model.body = body  # registered, so the tracer sees the layers as modules
    x = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    eps = 0.3
    pooled = F.max_pool2d(x, **pool).shape[1:]
    rows = dense(body, tuple(pooled)).weight.detach()
    bias = dense(body, tuple(pooled)).bias.detach()
    low, high = (x - eps)[0], (x + eps)[0]
    bounds = compute_bounds(model, x, eps, method="crown", intersect=False, lower=-1.0, upper=2.0)
    torch.testing.assert_close(bounds.lower[0], max_pool_crown_lower(low, high, rows, pool) + bias, atol=1e-9, rtol=0)
    torch.testing.assert_close(bounds.upper[0], -max_pool_crown_lower(low, high, -rows, pool) + bias, atol=1e-9, rtol=0)
