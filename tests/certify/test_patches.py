"""CROWN with patch coefficients gives the bounds of CROWN with dense coefficients.

The dense path (every coefficient a full map over the feature map, pushed through transposed
convolutions) is the independent oracle: both run on the same float64 graph and must agree on
every node's bounds. The nets cover what the patch geometry must get right: stride 2,
padding 0/1/2, dilation, groups, BatchNorm, a conv→BN→conv chain with padding and no ReLU in
between (entries of a window in the zero padding must not pick up a bias), residual sums
with a 1×1 stride-2 shortcut, overlapping and dilated max pooling (each window's element
j* chosen per sample), and the dense fallback (a spatially varying constant).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from certify_nets import randomise_batch_norm
from harp_plugin.bounds import compute_bounds
from harp_plugin.bounds.graph import build_graph
from harp_plugin.bounds.methods import crown
from harp_plugin.bounds.methods.patches import Patches
from harp_plugin.bounds.spec import input_box


SIZE = 16
"""Input height and width: large enough that windows stay smaller than the feature maps."""


class PaddedChain(nn.Module):
    """conv(s2, p1) → BN → ReLU → conv(p2) → BN → conv(p1, s2) (no ReLU between: the padding
    trap) → ReLU → dilated conv → ReLU → conv(p0) → ReLU → FC."""

    def __init__(self, dilation: int = 2, groups: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=2), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=dilation, dilation=dilation, groups=groups), nn.ReLU(),
            nn.Conv2d(4, 3, 2, padding=0), nn.ReLU(), nn.Flatten(),
        )
        self.head = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        return self.head(self.features(x))


class DownsampleBlock(nn.Module):
    """ResNet's downsampling block, y = BN(conv(relu(BN(conv_s2(x))))) and
    relu(y + BN(conv1×1_s2(x))), then a subtraction of two bounded tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.shortcut = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2), nn.BatchNorm2d(6))
        self.head = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        x = self.stem(x)
        branch = self.body(x)
        x = F.relu(branch + self.shortcut(x))
        x = F.relu(x - branch * 0.5)
        return self.head(x.flatten(1))


class SpatialConstant(nn.Module):
    """A per-pixel constant factor between convs: no patches rule, so the dense path serves."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, SIZE * SIZE).view(1, 1, SIZE, SIZE))
        self.head = nn.Linear(3 * SIZE * SIZE, 4)

    def forward(self, x):
        x = F.relu(self.first(x)) * self.scale
        return self.head(F.relu(self.second(x)).flatten(1))


def _pooled(pool: nn.Module) -> nn.Sequential:
    """ResNet's stem (conv, BN, ReLU, max pool), then two conv-ReLU layers and a linear head."""
    features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), pool,
                             nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                             nn.Flatten())
    return nn.Sequential(features, nn.Linear(features(torch.zeros(1, 2, SIZE, SIZE)).shape[1], 4))


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    randomise_batch_norm(model, torch.Generator().manual_seed(seed))
    return model.double().eval()


def _both_paths(model: nn.Module, eps: float, seed: int):
    torch.manual_seed(seed)
    x = torch.rand(2, 2, SIZE, SIZE, dtype=torch.float64)
    graph = build_graph(model, x)
    box = input_box(x, eps)
    return [crown.crown_sweep(graph, box, 2**30, intersect=False, patches=p) for p in (True, False)]


NETS = {  # name: (model, whether patches reach the input box, whether a fallback must go dense)
    "padded chain, dilation 2": (lambda: PaddedChain(dilation=2), True, False),
    "padded chain, groups 2": (lambda: PaddedChain(dilation=1, groups=2), True, False),
    "downsample residual": (DownsampleBlock, True, False),
    "overlapping max pool": (lambda: _pooled(nn.MaxPool2d(3, 2, 1)), True, False),
    "dilated ceil-mode max pool": (lambda: _pooled(nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True)), True, False),
    "spatial constant": (SpatialConstant, False, True),
}


@pytest.mark.parametrize("name", list(NETS))
def test_patches_give_the_dense_bounds_on_every_node(name: str, monkeypatch) -> None:
    build, reaches_input, falls_back = NETS[name]
    torch.manual_seed(3)
    model = _seeded(build(), 3)
    calls = {"concretise": 0, "to_dense": 0}
    for method in calls:
        original = getattr(Patches, method)
        monkeypatch.setattr(Patches, method, lambda self, *a, _f=original, _m=method: calls.__setitem__(_m, calls[_m] + 1) or _f(self, *a))
    with_patches, dense = _both_paths(model, 0.05, 3)
    assert (calls["concretise"] > 0) == reaches_input, calls
    assert calls["to_dense"] > 0 or not falls_back, calls
    for (low_p, up_p), (low_d, up_d) in zip(with_patches, dense):
        torch.testing.assert_close(low_p, low_d, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(up_p, up_d, rtol=1e-5, atol=1e-9)
    unstable = sum(int(((l < 0) & (u > 0)).sum()) for l, u in dense[1:-1])
    assert unstable > 0, "no unstable neuron: the relaxations were never exercised"


def test_windows_are_the_unfolded_feature_map() -> None:
    """Window reads checked against F.unfold on an explicitly zero-padded map."""
    torch.manual_seed(0)
    values = torch.randn(2, 3, 7, 6)
    picks = torch.tensor([[0, 13, 41], [5, 20, 41]])
    patches = Patches(torch.zeros(2, 3, 1, 3, 5, 4), torch.stack([picks // 6, picks % 6], dim=2), (2, 1), (2, 1))
    got = patches.windows(values)
    padded = F.pad(values, (1, 6, 2, 12))  # left/right, top/bottom: every window lies inside
    unfolded = F.unfold(padded, (5, 4), stride=(2, 1)).view(2, 3, 5, 4, -1)
    columns = padded.shape[-1] - 4 + 1
    for b in range(2):
        for p, flat in enumerate(picks[b].tolist()):
            h, w = divmod(flat, 6)
            torch.testing.assert_close(got[b, p, 0], unfolded[b, :, :, :, h * columns + w])


def test_to_dense_places_each_kernel_at_its_window() -> None:
    kernels = torch.arange(1.0, 5.0).view(1, 1, 1, 1, 2, 2)
    patches = Patches(kernels, torch.tensor([[[1, 2]]]), (2, 2), (1, 1))
    dense = patches.to_dense(torch.Size((1, 4, 5)))
    expected = torch.zeros(4, 5)
    expected[1:3, 3:5] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # top-left (1·2 − 1, 2·2 − 1)
    torch.testing.assert_close(dense[0, 0, 0], expected)


def test_crown_is_strictly_tighter_than_ibp_somewhere() -> None:
    model = _seeded(PaddedChain(), 1).float()
    x = torch.rand(4, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4) % 4
    ibp = compute_bounds(model, x, 0.03, method="ibp", y=y)
    full = compute_bounds(model, x, 0.03, method="crown", y=y, intersect=False)
    assert (full.lower > ibp.lower + 1e-3).any()
    assert (full.upper < ibp.upper - 1e-3).any()
