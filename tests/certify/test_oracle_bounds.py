"""Bounds checked against answers found without the engine.

* Hand-built 1-D nets whose exact output range, IBP bound and CROWN bound are worked out
  on paper (in the comments): CROWN must be *strictly* tighter than IBP there, raw
  (``intersect=False``) included, so a CROWN that silently returns IBP bounds fails.
* Random 2-input MLPs: every point of a fine grid over the box lies inside the bounds, and
  the bounds equal those of a from-scratch IBP / CROWN written here for MLPs only.
* The input box is clipped to the data domain; certification runs in eval mode.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harp_plugin.certify import compute_bounds, margin_matrix
from harp_plugin.certify.accuracy import certified_accuracy
from reference_bounds import ReferenceBounds, linear, random_mlp


def v_net() -> nn.Sequential:
    """f(x) = ½·relu(x − ½) + ½·relu(½ − x) = ½·|x − ½|: exact range [0, ¼] on x ∈ [0, 1].

    IBP: each relu ∈ [0, ½] → f ∈ [0, ½]. CROWN: each relu lies under its chord (z + ½)/2,
    so f ≤ ¼·x + ¼·(1 − x) = ¼, exact; the lower line (slope 0 or 1, a tie here) gives 0.
    """
    return nn.Sequential(linear([[1.0], [-1.0]], [-0.5, 0.5]), nn.ReLU(), linear([[0.5, 0.5]], [0.0]))


def deep_v_net() -> nn.Sequential:
    """g(x) = relu(|x − ½| − ¼) on x ∈ [0, 1]: exact range [0, ¼].

    The hidden w = h1 + h2 − ¼ has IBP bounds [−¼, ¾] but CROWN bounds [−¼, ¼] (chords as in
    v_net). Output upper bound: CROWN (w's CROWN bounds, chord slope ½) = ½·(¼ + ¼) = ¼;
    CROWN-IBP (w's IBP bounds, chord slope ¾) = ¾·(h1 + h2) ≤ ¾·½ = ⅜; IBP = ¾.
    """
    return nn.Sequential(
        linear([[1.0], [-1.0]], [-0.5, 0.5]), nn.ReLU(), linear([[1.0, 1.0]], [-0.25]), nn.ReLU(),
        linear([[1.0]], [0.0]),
    )


CENTRE = torch.tensor([[0.5]], dtype=torch.float64)  # with ε = ½ the box is all of [0, 1]


@pytest.mark.parametrize("intersect", [True, False])
def test_crown_is_exact_and_strictly_tighter_than_ibp_on_the_v_net(intersect: bool) -> None:
    model = v_net()
    ibp = compute_bounds(model, CENTRE, 0.5, method="ibp")
    assert (ibp.lower.item(), ibp.upper.item()) == pytest.approx((0.0, 0.5), abs=1e-12)
    for method in ("crown", "crown-ibp"):
        crown = compute_bounds(model, CENTRE, 0.5, method=method, intersect=intersect)
        assert (crown.lower.item(), crown.upper.item()) == pytest.approx((0.0, 0.25), abs=1e-12), method


@pytest.mark.parametrize("intersect", [True, False])
def test_crown_beats_crown_ibp_beats_ibp_on_the_deep_v_net(intersect: bool) -> None:
    model = deep_v_net()
    uppers = {m: compute_bounds(model, CENTRE, 0.5, method=m, intersect=intersect).upper.item()
              for m in ("ibp", "crown-ibp", "crown")}
    assert uppers == pytest.approx({"ibp": 0.75, "crown-ibp": 0.375, "crown": 0.25}, abs=1e-12)
    for method in ("ibp", "crown-ibp", "crown"):
        assert compute_bounds(model, CENTRE, 0.5, method=method, intersect=intersect).lower.item() <= 1e-12


def test_hidden_relu_bounds_are_tightened_by_crown_only() -> None:
    """The second ReLU's input w: IBP [−¼, ¾], CROWN [−¼, ¼] (see deep_v_net)."""
    model = deep_v_net()
    for method, expected in (("ibp", 0.75), ("crown-ibp", 0.75), ("crown", 0.25)):
        (low, high), = [v for k, v in compute_bounds(model, CENTRE, 0.5, method=method).preactivations.items()
                        if k.endswith("3")]
        assert (low.item(), high.item()) == pytest.approx((-0.25, expected), abs=1e-12), method


def test_stable_relus_make_crown_exact_where_ibp_loses_the_correlation() -> None:
    """f(x) = relu(x + 1) − relu(x + 1) ≡ 0; both ReLUs are always on, IBP gives ±2ε."""
    model = nn.Sequential(linear([[1.0], [1.0]], [1.0, 1.0]), nn.ReLU(), linear([[1.0, -1.0]], [0.0]))
    x, eps = torch.tensor([[0.3]], dtype=torch.float64), 0.1
    ibp = compute_bounds(model, x, eps, method="ibp")
    assert (ibp.lower.item(), ibp.upper.item()) == pytest.approx((-0.2, 0.2), abs=1e-12)
    for method in ("crown", "crown-ibp"):
        for intersect in (True, False):
            crown = compute_bounds(model, x, eps, method=method, intersect=intersect)
            assert (crown.lower.item(), crown.upper.item()) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_input_box_is_clipped_to_the_data_domain() -> None:
    """f(x) = x at x = 0.1, ε = 0.3: [0, 0.4] in the pixel range, [−0.2, 0.4] on [−1, 1]."""
    model = nn.Sequential(linear([[1.0]], [0.0]))
    x = torch.tensor([[0.1]], dtype=torch.float64)
    for method in ("ibp", "crown-ibp", "crown"):
        clipped = compute_bounds(model, x, 0.3, method=method)
        assert (clipped.lower.item(), clipped.upper.item()) == pytest.approx((0.0, 0.4), abs=1e-12)
        wide = compute_bounds(model, x, 0.3, method=method, lower=-1.0, upper=1.0)
        assert (wide.lower.item(), wide.upper.item()) == pytest.approx((-0.2, 0.4), abs=1e-12)
        top = compute_bounds(model, torch.tensor([[0.9]], dtype=torch.float64), 0.3, method=method)
        assert (top.lower.item(), top.upper.item()) == pytest.approx((0.6, 1.0), abs=1e-12)


# ---------------------------------------------------------------- random 2-input MLPs

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
@pytest.mark.parametrize("intersect", [True, False])
def test_mlp_bounds_equal_a_from_scratch_implementation(seed: int, method: str, intersect: bool) -> None:
    """One sample per call: which neurons CROWN tightens is decided per sample here."""
    model = random_mlp(seed)
    x = torch.rand(3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    eps = 0.15
    for i in range(3):
        y = torch.tensor([i])
        box = ((x[i] - eps).clamp(min=0), (x[i] + eps).clamp(max=1))
        reference = ReferenceBounds(model, *box, method, intersect)
        for C, kwargs in ((torch.eye(3, dtype=torch.float64), {}), (margin_matrix(y, 3).double()[0], {"y": y})):
            bounds = compute_bounds(model, x[i:i + 1], eps, method=method, intersect=intersect, **kwargs)
            low, high = reference.output(C, method, intersect)
            torch.testing.assert_close(bounds.lower[0], low, atol=1e-10, rtol=0)
            torch.testing.assert_close(bounds.upper[0], high, atol=1e-10, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_every_grid_point_of_a_2d_box_is_inside_the_bounds(seed: int) -> None:
    """The grid's range is the exact range up to the grid step; the bounds must contain it,
    and CROWN's margin bounds must be at least as tight as IBP's there."""
    model = random_mlp(10 + seed, widths=(2, 8, 8, 3))
    x, eps = torch.tensor([[0.35, 0.6]], dtype=torch.float64), 0.2
    steps = torch.linspace(-eps, eps, 161, dtype=torch.float64)
    grid = torch.cartesian_prod(steps, steps) + x
    with torch.no_grad():
        values = model(grid)
    for method in ("ibp", "crown-ibp", "crown"):
        for intersect in (True, False):
            bounds = compute_bounds(model, x, eps, method=method, intersect=intersect)
            assert (values >= bounds.lower - 1e-10).all() and (values <= bounds.upper + 1e-10).all(), method
    ibp, crown = (compute_bounds(model, x, eps, method=m, y=torch.tensor([0])) for m in ("ibp", "crown"))
    assert (crown.upper - crown.lower <= ibp.upper - ibp.lower + 1e-12).all()


# ---------------------------------------------------------------- certification mode

def test_certification_runs_in_eval_mode_and_leaves_the_model_as_it_was() -> None:
    """BN whose batch statistics (train mode) invert the classes its running statistics give.

    f = BN(x₁ − x₀) → two logits (+z, −z). In eval mode (mean 0, var 1) class 0 wins iff
    x₀ > x₁. The batch's x₁ − x₀ = (−0.8, −0.6, −0.1, 0.1) has mean −0.35, so train mode
    moves the third sample to class 1. With ε = 0.01 (|z| moves ≤ 0.02 < 0.1) every sample
    is certified in eval mode.
    """
    model = nn.Sequential(linear([[-1.0, 1.0]], [0.0]), nn.BatchNorm1d(1).double(),
                          linear([[-1.0], [1.0]], [0.0, 0.0]))
    x = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.5], [0.4, 0.5]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = certified_accuracy(model, [(x, y)], 0.01, method="crown", backend="native", progress=False)
    assert (result.certified, result.correct, result.total) == (4, 4, 4)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed: certification ran in train mode"


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_certification_gives_each_submodule_its_own_mode_back(method: str) -> None:
    """A training model whose BatchNorm and Dropout were frozen by the user (fine-tuning):
    bounding must not unfreeze them (it once restored only the top-level flag, recursively)."""
    model = nn.Sequential(linear([[1.0, -1.0], [0.5, 0.5]], [0.0, 0.1]), nn.BatchNorm1d(2).double(),
                          nn.Dropout(0.5), nn.ReLU(), linear([[1.0, 1.0]], [0.0]))
    model.train()
    model[1].eval()
    model[2].eval()
    compute_bounds(model, torch.tensor([[0.4, 0.6]], dtype=torch.float64), 0.1, method=method)
    assert [m.training for m in model] == [True, False, False, True, True]


def test_unstable_relus_are_counted_per_layer_and_sample() -> None:
    """v_net's hidden pre-activations are x − ½ and ½ − x: both straddle 0 around x = 0.5 and
    0.55 (ε = 0.1), neither on [0.85, 0.95]; counts are summed over the batch."""
    assert compute_bounds(v_net(), torch.tensor([[0.9]], dtype=torch.float64), 0.05,
                          method="ibp").unstable_counts() == {"1": 0}
    x = torch.tensor([[0.5], [0.55], [0.9]], dtype=torch.float64)
    assert compute_bounds(v_net(), x, 0.1, method="crown").unstable_counts() == {"1": 4}
