"""The fast IBP path (fused conv/linear + BatchNorm, centre/radius forms, in-place updates, the
operator cache) must bound exactly what the model computes now.

Oracles: the operators' own interval rule applied node by node to the unfused graph (what IBP
is by definition), and the first call on a fresh deep copy of the model (nothing cached)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from certify_nets import HandResidual, mask_weights, randomise_batch_norm, residual_net, sequential_net
from harp_plugin.bounds import compute_bounds
from harp_plugin.bounds.graph import build_graph
from harp_plugin.bounds.spec import input_box, margin_matrix

EPS = 0.05


def node_by_node_ibp(model: nn.Module, x: torch.Tensor, eps: float):
    """IBP of the outputs and of every ReLU's input, each node by its operator's interval rule."""
    graph = build_graph(model, x)
    bounds = [input_box(x, eps)]
    for node in graph.nodes[1:]:
        bounds.append(node.op.interval([bounds[i] for i in node.inputs]))
    preactivations = {graph.nodes[i].name: bounds[graph.nodes[i].inputs[0]] for i in graph.relu_nodes}
    return bounds[-1], preactivations


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool(((a - b).abs() <= rel * (1 + b.abs())).all())


def grey_net(seed: int) -> nn.Sequential:
    """One input channel; stride, padding and dilation all non-trivial and per axis (8×8 → 4×5)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, (3, 2), stride=2, padding=(2, 1), dilation=(2, 1)), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 5, 4),
    )
    randomise_batch_norm(model, torch.Generator().manual_seed(seed))
    return model.eval()


MODELS = {
    "sequential": (lambda: sequential_net(0), 2),
    "residual": (lambda: residual_net(1), 2),
    "hand-residual": (lambda: HandResidual().eval(), 2),
    "masked": (lambda: mask_weights(sequential_net(2), 2, "parametrize"), 2),
    "grey": (lambda: grey_net(6), 1),
}


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", MODELS)
def test_fast_ibp_equals_node_by_node_ibp(name: str, grad: bool, monkeypatch) -> None:
    """Outputs, margin bounds (C folded into the last layer) and pre-activations, with and
    without autograd (in-place updates only without), the batch split into chunks of one
    sample (the CPU path's cache-sized chunks, shrunk) so the chunks must be joined in order."""
    monkeypatch.setattr("harp_plugin.bounds.engine.IBP_CHUNK_BYTES", 1)
    torch.manual_seed(0)
    build, channels = MODELS[name]
    model = build()
    x, y = torch.rand(5, channels, 8, 8), torch.randint(0, 4, (5,))
    with torch.no_grad():
        (low, high), pre = node_by_node_ibp(model, x, EPS)
    with torch.set_grad_enabled(grad):
        outputs = compute_bounds(model, x, EPS, method="ibp")
        margins = compute_bounds(model, x, EPS, method="ibp", y=y)
    assert close(outputs.lower.detach(), low) and close(outputs.upper.detach(), high)
    # the folded margin bound is at least as tight as the difference of the output intervals
    C = margin_matrix(y, 4)
    loose = (C.clamp(min=0) @ low.unsqueeze(-1) + C.clamp(max=0) @ high.unsqueeze(-1)).squeeze(-1)
    assert bool((margins.lower.detach() >= loose - 1e-5 * (1 + loose.abs())).all())
    assert set(outputs.preactivations) == set(pre)
    for relu, (l, u) in pre.items():
        got_l, got_u = outputs.preactivations[relu]
        assert close(got_l.detach(), l) and close(got_u.detach(), u), relu


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_repeated_calls_equal_a_fresh_copy(method: str) -> None:
    """The second and third calls (trace, shapes and weight-free operators cached) give the
    bounds of a first call on a deep copy of the model."""
    model, x, y = residual_net(3), torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        calls = [compute_bounds(model, x, EPS, method=method, y=y) for _ in range(3)]
        fresh = compute_bounds(copy.deepcopy(model), x, EPS, method=method, y=y)
    for result in calls:
        assert torch.equal(result.lower, fresh.lower) and torch.equal(result.upper, fresh.upper)


@pytest.mark.parametrize("change", ["in_place", "data", "batch_norm_statistics", "mask_buffer"])
def test_a_tensor_changed_between_calls_is_bounded(change: str) -> None:
    """Weights changed in place (as an optimiser step does), through ``.data`` (which does not
    bump the tensor's version counter), BatchNorm running statistics and a parametrization's
    mask: the next call bounds the changed model, as a fresh copy of it does."""
    model = mask_weights(sequential_net(4), 4, "parametrize")
    x = torch.rand(3, 2, 8, 8)
    conv = model[0][1]
    with torch.no_grad():
        before = compute_bounds(model, x, EPS, method="ibp")
        if change == "in_place":
            conv.parametrizations.weight.original.mul_(3.0)
        elif change == "data":
            conv.parametrizations.weight.original.data.add_(0.5)
        elif change == "batch_norm_statistics":
            model[0][2].running_var.mul_(0.25)
        else:
            conv.parametrizations.weight[0].mask.fill_(1.0)
        after = compute_bounds(model, x, EPS, method="ibp")
        fresh = compute_bounds(copy.deepcopy(model), x, EPS, method="ibp")
    assert not torch.equal(before.upper, after.upper)
    assert torch.equal(after.lower, fresh.lower) and torch.equal(after.upper, fresh.upper)


def test_a_changed_hyper_parameter_is_bounded() -> None:
    """An operator without tensors is reused across calls; changing the module's setting
    (LeakyReLU's slope) must still change the bounds."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.LeakyReLU(0.1), nn.Linear(6, 3)).eval()
    x = torch.rand(4, 8)
    with torch.no_grad():
        before = compute_bounds(model, x, EPS, method="ibp")
        model[2].negative_slope = 0.5
        after = compute_bounds(model, x, EPS, method="ibp")
        fresh = compute_bounds(copy.deepcopy(model), x, EPS, method="ibp")
    assert not torch.equal(before.lower, after.lower)
    assert torch.equal(after.lower, fresh.lower)


def test_bounds_contain_sampled_points_of_the_ball() -> None:
    """Soundness of the fused path on points of the ball (box corners and uniform points)."""
    torch.manual_seed(5)
    model, x = residual_net(5, projection=True), torch.rand(2, 2, 8, 8)
    with torch.no_grad():
        result = compute_bounds(model, x, EPS, method="ibp")
        low, high = input_box(x, EPS)
        for _ in range(20):
            corner = torch.where(torch.rand_like(x) < 0.5, low, high)
            uniform = low + (high - low) * torch.rand_like(x)
            for point in (corner, uniform):
                out = model(point)
                assert bool((out >= result.lower - 1e-5).all() and (out <= result.upper + 1e-5).all())
