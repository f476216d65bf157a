"""Bad input fails loudly and names what is wrong: the node, its target, its module path."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certify_nets import sequential_net
from harp_plugin.bounds import (
    BoundError,
    UnsupportedLayerError,
    UntraceableModelError,
    compute_bounds,
    margin_matrix,
    supported_operations,
)
from harp_plugin.bounds.numerics import checked_bounds


def x_batch() -> torch.Tensor:
    return torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))


def test_unsupported_module_names_node_target_path_and_the_supported_list() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sequential(nn.ReLU(), nn.Sigmoid()), nn.Flatten(), nn.Linear(108, 3))
    with pytest.raises(UnsupportedLayerError) as caught:
        compute_bounds(model, x_batch(), 0.1, method="ibp")
    message = str(caught.value)
    assert "node '_1_1' (target module 1.1) of layer '1.1' of type Sigmoid" in message
    assert "Supported operations: " in message and "Conv2d" in message and "Tensor.view" in message
    with pytest.raises(TypeError):  # the error is a TypeError for callers that catch those
        compute_bounds(nn.Sequential(nn.Flatten(), nn.GELU(), nn.Linear(128, 3)), x_batch(), 0.1)


def test_unsupported_function_inside_a_custom_forward_names_its_module() -> None:
    class Gate(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = nn.Sequential(nn.Conv2d(2, 3, 3), Gate(), nn.Flatten(), nn.Linear(108, 3))
    with pytest.raises(UnsupportedLayerError, match=r"node 'sigmoid' \(target function sigmoid\) of layer '1' of type Gate"):
        compute_bounds(model, x_batch(), 0.1)

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    model = nn.Sequential(Square(), nn.Flatten(), nn.Linear(128, 3))
    with pytest.raises(UnsupportedLayerError, match="the product of two bounded tensors is not linear"):
        compute_bounds(model, x_batch(), 0.1)


def test_untraceable_model_gets_the_tracer_reason_and_the_way_out() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(128, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                x = x * 2
            return self.fc(x.flatten(1))

    with pytest.raises(UntraceableModelError, match="torch.fx cannot trace Branchy: TraceError.*register_layer.*auto_lirpa"):
        compute_bounds(Branchy(), x_batch(), 0.1)


def test_forward_hooks_are_refused_with_the_alternative() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(128, 3))
    model[1].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(UnsupportedLayerError, match="'1' of type Linear.*forward hook.*parametrization"):
        compute_bounds(model, x_batch(), 0.1)


def test_custom_forward_is_bounded_as_written() -> None:
    """A Sequential subclass that doubles its output: the bound doubles (checked against the
    plain Sequential's bound, a separate computation)."""

    class Twice(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(128, 3), nn.ReLU(), nn.Linear(3, 3))
    doubled = Twice(*plain)
    for method in ("ibp", "crown"):
        reference = compute_bounds(plain, x_batch(), 0.05, method=method)
        result = compute_bounds(doubled, x_batch(), 0.05, method=method)
        torch.testing.assert_close(result.lower, 2 * reference.lower)
        torch.testing.assert_close(result.upper, 2 * reference.upper)


def test_supported_operations_cover_the_issue_list() -> None:
    names = set(supported_operations())
    for name in ("Linear", "Conv1d", "Conv2d", "BatchNorm2d", "ReLU", "ReLU6", "LeakyReLU", "Hardtanh",
                 "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Identity", "Dropout", "Flatten",
                 "torch.cat", "torch.flatten", "F.relu", "operator.add", "operator.sub", "operator.matmul",
                 "Tensor.view", "Tensor.permute", "Tensor.transpose", "Tensor.reshape", "Tensor.mean"):
        assert name in names, name


def test_bad_eps_labels_devices_and_inputs() -> None:
    model = sequential_net(0)
    for eps in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
            compute_bounds(model, x_batch(), eps)
    with pytest.raises(ValueError, match="class index 7 is out of range for a model with 4 outputs"):
        compute_bounds(model, x_batch(), 0.1, y=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="class index -1"):
        margin_matrix(torch.tensor([-1]), 4)
    with pytest.raises(ValueError, match="outside the valid range"):
        compute_bounds(model, x_batch() + 1.5, 0.1)
    with pytest.raises(ValueError, match="unknown bound method 'deeppoly'"):
        compute_bounds(model, x_batch(), 0.1, method="deeppoly")
    with pytest.raises(ValueError, match="the input is on meta but the model on cpu"):
        compute_bounds(model, x_batch().to("meta"), 0.1)
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes, got 0"):
        compute_bounds(model, x_batch(), 0.1, method="crown", memory_budget=0)


def test_nan_weights_are_reported_with_the_layer() -> None:
    model = sequential_net(0)
    model[1].weight.data[0, 0] = float("nan")
    for method in ("ibp", "crown"):
        with pytest.raises(BoundError, match="'1' contain NaN"):
            compute_bounds(model, x_batch(), 0.1, method=method)


def test_inversions_beyond_rounding_raise_and_within_it_are_widened() -> None:
    with pytest.raises(BoundError, match="'layer' are inverted: lower exceeds upper by 1"):
        checked_bounds(torch.ones(2, 3), torch.zeros(2, 3), "layer")
    lower, upper = torch.tensor([1.0, 0.0]), torch.tensor([1.0 - 1e-6, 1.0])
    widened = checked_bounds(lower, upper, "layer")
    torch.testing.assert_close(widened[0], torch.tensor([1.0 - 1e-6, 0.0]))
    torch.testing.assert_close(widened[1], torch.tensor([1.0, 1.0]))


def test_margin_matrix_rows() -> None:
    C = margin_matrix(torch.tensor([2]), 4)
    expected = torch.tensor([[1.0, 0, -1, 0], [0, 1, -1, 0], [0, 0, -1, 1]]).neg()
    torch.testing.assert_close(C[0], expected)
