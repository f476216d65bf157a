"""Which layers get masks, and what a traced forward pass says about them."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_plugin.masking.errors import MaskingError, UnsupportedLayerError
from harp_plugin.models.modes import eval_mode
from harp_plugin.models.shapes import locate_shape_error

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
    norm: str | None = None  # the BatchNorm applied directly to this layer's output, if any


def trace_layers(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, LayerTrace]:
    """Run one forward pass; record each executed Conv/Linear/attention layer's order, dense
    MACs (an attention block: its input and output projections) and the BN right after it."""
    traces: dict[str, LayerTrace] = {}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor is kept so its id stays unique
    batch = example_inputs.shape[0] if example_inputs.dim() > 0 else 1

    def record(name: str):
        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(module, nn.MultiheadAttention):
                tokens = output[0].numel() / batch / module.embed_dim
                macs = tokens * sum(p.numel() for n, p in module.named_parameters() if n.endswith("weight"))
            else:
                macs = output.numel() / batch * module.weight[0].numel()
            traces.setdefault(name, LayerTrace(len(traces), float(macs)))
            outputs[id(output)] = (name, output)
        return hook

    def record_norm(norm_name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            producer = outputs.get(id(inputs[0]))
            if producer is not None and traces[producer[0]].norm is None:
                traces[producer[0]] = dataclasses.replace(traces[producer[0]], norm=norm_name)
        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, (*PRUNABLE_TYPES, nn.MultiheadAttention))
    ] + [
        module.register_forward_pre_hook(record_norm(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        with eval_mode(model), torch.no_grad():
            run_example(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return traces


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval mode and every buffer (BN statistics) afterwards.

    Torch-Pruning's ``DependencyGraph`` runs a forward pass and leaves the model in eval mode;
    in train mode that pass would also fold the example inputs into the BN running statistics.
    """
    modes = {module: module.training for module in model.modules()}
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in buffers and buffer.shape == buffers[name].shape:
                    buffer.copy_(buffers[name])


def run_example(model: nn.Module, example_inputs: torch.Tensor) -> torch.Tensor:
    """model(example_inputs), with a shape mismatch reported as a clear MaskingError."""
    try:
        return model(example_inputs)
    except (RuntimeError, ValueError) as error:
        where = locate_shape_error(model, example_inputs) if isinstance(error, RuntimeError) else None
        raise MaskingError(
            f"example_inputs of shape {tuple(example_inputs.shape)} do not fit "
            f"{type(model).__name__}: {where or error}"
        ) from error


def classifier_name(traces: dict[str, LayerTrace]) -> str:
    """The last Conv2d/Linear executed: the layer whose outputs are the class logits."""
    return max(traces, key=lambda name: traces[name].order)
