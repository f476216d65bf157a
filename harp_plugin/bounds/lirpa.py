"""Adapter to auto_LiRPA (≥ 0.7, installed from source; see docs/certification.md).

It wraps a parseable copy of the model (:func:`parseable_copy`) in a ``BoundedModule`` once
per adapter, so the adapter bounds the weights the model had when it was built: build a new
one after training or pruning. It returns the engine's own :class:`BoundResult`.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from harp_plugin.bounds.engine import BoundResult
from harp_plugin.bounds.numerics import checked_bounds
from harp_plugin.bounds.precision import exact_float32
from harp_plugin.bounds.spec import PIXEL_RANGE, input_box, margin_matrix
from harp_plugin.models.normalization import InputNormalization

LIRPA_METHODS = {"ibp": "IBP", "crown": "CROWN", "crown-ibp": "CROWN-IBP", "alpha-crown": "alpha-CROWN"}
INSTALL_HINT = (
    "auto_LiRPA is not installed (PyPI only has 0.3, which does not import on torch 2.x); install "
    "0.7+ from source: pip install git+https://github.com/Verified-Intelligence/auto_LiRPA, or from "
    "a wheel: make install LIRPA_WHEELS=<folder with auto_lirpa-*.whl>"
)


def lirpa_available() -> bool:
    try:
        import auto_LiRPA  # noqa: F401
    except Exception:  # an old release fails on import with errors other than ImportError
        return False
    return True


_EVAL_IDENTITIES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def parseable_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy auto_LiRPA can parse; the model is untouched. Dropout layers (the
    identity in eval mode, but a parse failure in auto_LiRPA 0.7.1) become ``nn.Identity``;
    input normalisation becomes the equivalent 1×1 convolution (auto_LiRPA 0.7.1's full CROWN
    fails with a shape error on the subtraction and division ahead of small_cnn's first
    convolution); parametrized weights (HARP/HYDRA/LWM masks, which its jit
    tracer cannot follow) are folded into plain parameters holding their current masked values."""
    clone = copy.deepcopy(model).eval()
    for name, module in list(clone.named_modules()):
        parent, _, attribute = name.rpartition(".")
        if isinstance(module, _EVAL_IDENTITIES):
            setattr(clone.get_submodule(parent), attribute, nn.Identity())
        elif isinstance(module, InputNormalization):
            setattr(clone.get_submodule(parent), attribute, _pointwise_conv(module))
        elif parametrize.is_parametrized(module):
            _fold_parametrizations(module)
    return clone


def _pointwise_conv(normalization: InputNormalization) -> nn.Conv2d:
    """``x / std − mean / std`` per channel as a 1×1 convolution with a diagonal weight (not a
    grouped one: auto_LiRPA 0.7.1's CROWN bounds a grouped 1×1 convolution differently from
    the same map written as a subtraction and division)."""
    channels = normalization.mean.numel()
    scale = 1 / normalization.std.flatten()
    conv = nn.Conv2d(channels, channels, 1).to(normalization.mean)
    with torch.no_grad():
        conv.weight.copy_(torch.diag(scale).view(channels, channels, 1, 1))
        conv.bias.copy_(-normalization.mean.flatten() * scale)
    return conv


def _fold_parametrizations(module: nn.Module) -> None:
    """Replace a copied module's parametrized tensors by plain parameters of their current values.

    Not ``parametrize.remove_parametrizations``: it deletes the property from the module's
    class, which a deep copy shares with the user's model, so the model itself would lose it.
    """
    values = {name: getattr(module, name).detach().clone() for name in module.parametrizations}
    module.__class__ = module.__class__.__bases__[0]
    del module._modules["parametrizations"]
    for name, value in values.items():
        module.register_parameter(name, nn.Parameter(value))


class LirpaBounds:
    """``bounds(x, eps, y)`` through auto_LiRPA, for one fixed model structure."""

    def __init__(self, model: nn.Module, example: Tensor) -> None:
        if not lirpa_available():
            raise ImportError(INSTALL_HINT)
        from auto_LiRPA import BoundedModule

        probe = torch.zeros_like(example[:1])
        with exact_float32():
            self.bounded = BoundedModule(parseable_copy(model), probe, device=example.device)
            self.classes = self.bounded(probe).shape[1]

    def __call__(
        self, x: Tensor, eps: float, y: Tensor, method: str,
        lower: float = PIXEL_RANGE[0], upper: float = PIXEL_RANGE[1],
    ) -> BoundResult:
        from auto_LiRPA import BoundedTensor, PerturbationLpNorm

        if method not in LIRPA_METHODS:
            raise ValueError(f"unknown bound method {method!r}; auto_LiRPA supports {tuple(LIRPA_METHODS)}")
        x_low, x_high = input_box(x, eps, lower, upper)
        perturbation = PerturbationLpNorm(norm=float("inf"), eps=eps, x_L=x_low, x_U=x_high)
        C = margin_matrix(y.to(x.device), self.classes).to(x.dtype)
        with exact_float32():
            low, high = self.bounded.compute_bounds(
                x=(BoundedTensor(x, perturbation),), method=LIRPA_METHODS[method], C=C, bound_upper=True
            )
        low, high = checked_bounds(low, high, "output specification (auto_LiRPA)")
        return BoundResult(low, high, method, "auto_lirpa", self._preactivations())

    def _preactivations(self) -> dict:
        """Input bounds of each ReLU, keyed by auto_LiRPA's node names (not module names)."""
        found = {}
        for node in getattr(self.bounded, "relus", []):
            source = node.inputs[0]
            if getattr(source, "lower", None) is not None and getattr(source, "upper", None) is not None:
                found[getattr(node, "ori_name", node.name)] = (source.lower, source.upper)
        return found

