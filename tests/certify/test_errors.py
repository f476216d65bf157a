"""Bad input fails loudly and names what is wrong."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certify_nets import sequential_net
from harp_plugin.bounds import BoundError, Residual, UnsupportedLayerError, compute_bounds, margin_matrix


def x_batch() -> torch.Tensor:
    return torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "layer, kind",
    [(nn.MaxPool2d(2), "MaxPool2d"), (nn.LeakyReLU(), "LeakyReLU"), (nn.Sigmoid(), "Sigmoid")],
)
def test_unsupported_layer_is_named(layer: nn.Module, kind: str) -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sequential(nn.ReLU(), layer), nn.Flatten(), nn.LazyLinear(3))
    model(x_batch())
    with pytest.raises(UnsupportedLayerError, match=rf"'1\.1' of type {kind}"):
        compute_bounds(model, x_batch(), 0.1, method="ibp")


def test_custom_forward_and_hooks_are_refused() -> None:
    class Custom(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(Custom(nn.Flatten()), nn.Linear(128, 3))
    with pytest.raises(UnsupportedLayerError, match="'0' of type Custom"):
        compute_bounds(model, x_batch(), 0.1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(128, 3))
    model[1].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(UnsupportedLayerError, match="'1' of type Linear.*forward hook"):
        compute_bounds(model, x_batch(), 0.1)
    with pytest.raises(TypeError):  # the error is a TypeError for callers that catch those
        compute_bounds(nn.Sequential(nn.Flatten(), nn.GELU(), nn.Linear(128, 3)), x_batch(), 0.1)


def test_residual_subclass_with_own_forward_is_refused() -> None:
    class Twice(Residual):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(Twice(nn.Identity()), nn.Flatten(), nn.Linear(128, 2))
    with pytest.raises(UnsupportedLayerError, match="overrides Residual.forward"):
        compute_bounds(model, x_batch(), 0.1)


def test_bad_eps_labels_and_inputs() -> None:
    model = sequential_net(0)
    with pytest.raises(ValueError, match="eps must be .* >= 0, got -0.1"):
        compute_bounds(model, x_batch(), -0.1)
    with pytest.raises(ValueError, match="class index 7 is out of range for a model with 4 outputs"):
        compute_bounds(model, x_batch(), 0.1, y=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="class index -1"):
        margin_matrix(torch.tensor([-1]), 4)
    with pytest.raises(ValueError, match="outside the valid range"):
        compute_bounds(model, x_batch() + 1.5, 0.1)
    with pytest.raises(ValueError, match="unknown bound method 'deeppoly'"):
        compute_bounds(model, x_batch(), 0.1, method="deeppoly")


def test_nan_weights_are_reported_with_the_layer() -> None:
    model = sequential_net(0)
    model[1].weight.data[0, 0] = float("nan")
    with pytest.raises(BoundError, match="'1' contain NaN"):
        compute_bounds(model, x_batch(), 0.1, method="ibp")


def test_inverted_bounds_are_reported() -> None:
    from harp_plugin.bounds.spec import check_bounds

    with pytest.raises(BoundError, match="'layer' are inverted"):
        check_bounds(torch.ones(2, 3), torch.zeros(2, 3), "layer")


def test_margin_matrix_rows() -> None:
    C = margin_matrix(torch.tensor([2]), 4)
    expected = torch.tensor([[1.0, 0, -1, 0], [0, 1, -1, 0], [0, 0, -1, 1]]).neg()
    torch.testing.assert_close(C[0], expected)
