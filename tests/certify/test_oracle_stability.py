"""StabilityImportance against its formula on a hand-built BN layer, and its cache.

Score per channel = mean over calibration inputs of tanh(1 + l·u/γ²), where [l, u] bounds the
BN output on the clipped ε-ball (Li et al., TMLR 2023). Dividing by |γ| instead of γ², or keeping
scores from before retraining or pruning, gives different numbers here.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch_pruning as tp
from torch import nn

from certify_nets import sequential_net
from harp_plugin.certify.importance import StabilityImportance

WEIGHT, BIAS, GAMMA, BETA, MEAN, VAR = (3.0, -2.5), (-1.5, 1.5), (0.5, -2.0), (0.05, 0.3), (0.1, -0.2), (0.8, 1.5)
PIXELS, EPS = (0.5, 0.9), 0.2


def bn_model() -> nn.Sequential:
    """1×1 conv (one pixel in) → BN → ReLU → FC: each channel's BN output is affine in the pixel."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)).double()
    conv, bn = model[0], model[1]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(WEIGHT, dtype=torch.float64).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor(BIAS, dtype=torch.float64))
        bn.weight.copy_(torch.tensor(GAMMA, dtype=torch.float64))
        bn.bias.copy_(torch.tensor(BETA, dtype=torch.float64))
        bn.running_mean.copy_(torch.tensor(MEAN, dtype=torch.float64))
        bn.running_var.copy_(torch.tensor(VAR, dtype=torch.float64))
    return model.eval()


def hand_scores(divide_by: str = "square", lower: float = 0.0, upper: float = 1.0) -> list[float]:
    scores = []
    for c in range(2):
        values = []
        for pixel in PIXELS:
            ends = [max(pixel - EPS, lower), min(pixel + EPS, upper)]
            outputs = [GAMMA[c] * (WEIGHT[c] * p + BIAS[c] - MEAN[c]) / math.sqrt(VAR[c] + 1e-5) + BETA[c] for p in ends]
            low, high = min(outputs), max(outputs)
            scale = GAMMA[c] ** 2 if divide_by == "square" else abs(GAMMA[c])
            values.append(math.tanh(1 + low * high / scale))
        scores.append(sum(values) / len(values))
    return scores


def conv_group(model: nn.Module, example: torch.Tensor, conv: nn.Conv2d) -> tp.Group:
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    return graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))


def test_nrs_scores_match_the_formula_with_gamma_squared() -> None:
    model = bn_model()
    calibration = torch.tensor(PIXELS, dtype=torch.float64).view(2, 1, 1, 1)
    importance = StabilityImportance(model, calibration, EPS, mode="nrs", magnitude_weight=0.0, dead_penalty=None)
    scores = importance(conv_group(model, calibration, model[0]))
    expected, by_abs = hand_scores("square"), hand_scores("abs")
    assert max(abs(a - b) for a, b in zip(expected, by_abs)) > 0.01, "the fixture must tell γ² from |γ|"
    assert scores.tolist() == pytest.approx(expected, abs=1e-7)  # γ² + 1e-8 in the code


def test_calibration_batches_pairs_domain_and_the_magnitude_tie_breaker() -> None:
    """Two (x, y) batches of one pixel each score like one batch of both; magnitude_weight adds
    w·‖θ_c‖/max‖θ‖ (1×1 conv: |3| and |−2.5| → 1 and 5/6); max_batches stops early."""
    model = bn_model()
    pixels = torch.tensor(PIXELS, dtype=torch.float64).view(2, 1, 1, 1)
    group = conv_group(model, pixels, model[0])
    pairs = [(pixels[:1], torch.zeros(1)), (pixels[1:], torch.zeros(1))]
    weighted = StabilityImportance(model, pairs, EPS, magnitude_weight=0.5, dead_penalty=None)(group)
    expected = [score + 0.5 * norm for score, norm in zip(hand_scores(), (1.0, 2.5 / 3.0))]
    assert weighted.tolist() == pytest.approx(expected, abs=1e-7)
    defaults = StabilityImportance(model, pixels, EPS)(group)
    assert defaults.tolist() == pytest.approx([s + 1e-3 * n for s, n in zip(hand_scores(), (1.0, 2.5 / 3.0))], abs=1e-7)
    wide = StabilityImportance(model, pixels, EPS, magnitude_weight=0.0, dead_penalty=None, lower=-1.0, upper=2.0)
    assert wide(group).tolist() == pytest.approx(hand_scores(lower=-1.0, upper=2.0), abs=1e-7)
    first_only = StabilityImportance(model, pairs * 3, EPS, magnitude_weight=0.0, dead_penalty=None, max_batches=1)
    one = StabilityImportance(model, pixels[:1], EPS, magnitude_weight=0.0, dead_penalty=None)
    torch.testing.assert_close(first_only(group), one(group))
    for bad in ([], [torch.empty(0, 1, 1, 1)]):
        with pytest.raises(ValueError, match="calibration must be a non-empty tensor"):
            StabilityImportance(model, bad, EPS)


def test_a_dead_channel_drops_below_every_live_one_by_the_penalty() -> None:
    """Channel 0 made dead (BN output ≤ 0 on every ball): its score becomes min(scores) − 1."""
    model = bn_model()
    with torch.no_grad():
        model[1].bias[0] = -50.0
    pixels = torch.tensor(PIXELS, dtype=torch.float64).view(2, 1, 1, 1)
    group = conv_group(model, pixels, model[0])
    naive = StabilityImportance(model, pixels, EPS, magnitude_weight=0.0, dead_penalty=None)(group)
    assert naive[0] > naive[1], "dead looks stable to plain NRS"
    penalised = StabilityImportance(model, pixels, EPS, magnitude_weight=0.0, dead_penalty=1.0)(group)
    assert penalised.tolist() == pytest.approx([float(naive[1]) - 1.0, float(naive[1])], abs=1e-9)


X = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(0))


def fresh_scores(model: nn.Module, conv: nn.Conv2d) -> torch.Tensor:
    """What a newly built importance (no cache) says about ``conv``'s channels now."""
    return StabilityImportance(model, X, 0.02, magnitude_weight=0.0)(conv_group(model, X[:1], conv))


def test_scores_follow_retraining() -> None:
    model = sequential_net(0)
    conv = model[0][1]
    importance = StabilityImportance(model, X, 0.02, magnitude_weight=0.0)
    before = importance(conv_group(model, X[:1], conv))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(3):  # in-place updates: the same parameter objects, new values
        optimiser.zero_grad()
        model(X).square().mean().backward()
        optimiser.step()
    model.eval()
    after = importance(conv_group(model, X[:1], conv))
    assert not torch.allclose(after, before, atol=1e-4)
    torch.testing.assert_close(after, fresh_scores(model, conv))


def test_scores_follow_a_pruning_step() -> None:
    model = sequential_net(1)
    importance = StabilityImportance(model, X, 0.02, magnitude_weight=0.0)
    pruner = tp.MetaPruner(model, X[:1], importance=importance, pruning_ratio=0.5, ignored_layers=[model[3]])
    pruner.step()
    for conv in (model[0][1], model[0][5]):
        assert conv.out_channels == 2
        torch.testing.assert_close(importance(conv_group(model, X[:1], conv)), fresh_scores(model, conv))
