"""Which layers get masks, and what a traced forward pass says about them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_plugin.masking.errors import MaskingError, UnsupportedLayerError

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
# Weight layers HARP would silently leave dense: refuse them unless ignored explicitly.
_UNSUPPORTED_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Bilinear)


def find_prunable(model: nn.Module, ignored_layers: Iterable[nn.Module] = ()) -> dict[str, nn.Module]:
    """Every Conv2d/Linear outside ``ignored_layers`` (and their submodules), by name."""
    ignored = {id(sub) for layer in ignored_layers for sub in layer.modules()}
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if id(module) in ignored:
            continue
        if isinstance(module, PRUNABLE_TYPES):
            if parametrize.is_parametrized(module, "weight"):
                raise MaskingError(
                    f"layer {name or '<model>'!r} already has a parametrized weight "
                    "(masks attached twice?); call remove_masks first"
                )
            found[name] = module
        elif isinstance(module, _UNSUPPORTED_TYPES):
            raise UnsupportedLayerError(
                f"HARP masks Conv2d and Linear weights only; layer {name!r} is "
                f"{type(module).__name__}: pass it in ignored_layers to keep it dense"
            )
    if not found:
        raise MaskingError(
            f"{type(model).__name__} has no prunable layer (Conv2d or Linear) outside ignored_layers"
        )
    return found


@dataclass(frozen=True)
class LayerTrace:
    """What one forward pass on the example inputs showed about a layer."""

    order: int
    dense_flops: float  # multiply-accumulates per sample with every channel kept


def trace_layers(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, LayerTrace]:
    """Run one forward pass; record each executed Conv2d/Linear's order and dense MACs."""
    traces: dict[str, LayerTrace] = {}
    batch = example_inputs.shape[0] if example_inputs.dim() > 0 else 1

    def record(name: str):
        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            macs = output.numel() / batch * module.weight[0].numel()
            traces.setdefault(name, LayerTrace(len(traces), float(macs)))
        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            run_example(model, example_inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return traces


def run_example(model: nn.Module, example_inputs: torch.Tensor) -> torch.Tensor:
    """model(example_inputs), with a shape mismatch reported as a clear MaskingError."""
    try:
        return model(example_inputs)
    except (RuntimeError, ValueError) as error:
        raise MaskingError(
            f"example_inputs of shape {tuple(example_inputs.shape)} do not fit "
            f"{type(model).__name__}: {error}"
        ) from error


def classifier_name(traces: dict[str, LayerTrace]) -> str:
    """The last Conv2d/Linear executed: the layer whose outputs are the class logits."""
    return max(traces, key=lambda name: traces[name].order)
