"""Shape errors that name the layer: torch says "mat1 and mat2 shapes cannot be multiplied",
this says which layer of the user's model refused which input shape.

Nothing is checked on the happy path: only after a ``RuntimeError`` is one sample re-run,
in eval mode without gradients, with hooks recording the layer that was entered last.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from harp_plugin.models.modes import eval_mode


class InputShapeError(ValueError):
    """The input does not fit the model; the message names the layer and the shapes."""


@contextmanager
def shape_errors_named(model: nn.Module, inputs: torch.Tensor) -> Iterator[None]:
    """Re-raise a ``RuntimeError`` from the block as :class:`InputShapeError` when running
    ``model`` on ``inputs`` shows the layer that cannot take its input; otherwise unchanged."""
    try:
        yield
    except RuntimeError as error:
        where = locate_shape_error(model, inputs)
        if where is None:
            raise
        raise InputShapeError(where) from error


def locate_shape_error(model: nn.Module, inputs: torch.Tensor) -> str | None:
    """``"layer 'name' (Type) cannot take input of shape (...) ..."``, or ``None`` if it runs."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0:
        return None
    sample = inputs[:1]
    entered: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    finished: list[tuple[int, ...]] = []

    def before(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            entered.append((name, module, _shape(args[0] if args else None)))
            finished.clear()
        return hook

    def after(module: nn.Module, args: tuple, output: object) -> None:
        finished.append(_shape(output))

    leaves = [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    handles = [m.register_forward_pre_hook(before(name)) for name, m in leaves]
    handles += [m.register_forward_hook(after) for _, m in leaves]
    try:
        with eval_mode(model), torch.no_grad():
            model(sample)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        if not entered:
            return f"the model cannot take input of shape {tuple(inputs.shape)}: {reason}"
        name, module, shape = entered[-1]
        if finished:  # the last layer ran: the failure is in the code after it
            return (
                f"the model fails after layer {name!r} ({type(module).__name__}, output shape {finished[-1]}) "
                f"on input of shape {tuple(inputs.shape)}: {reason}"
            )
        return (
            f"layer {name!r} ({type(module).__name__}) cannot take input of shape {shape}"
            f"{_expected_input(module)} (model input shape {tuple(inputs.shape)}): {reason}"
        )
    else:
        return None
    finally:
        for handle in handles:
            handle.remove()


def _shape(value: object) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def _expected_input(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return f", it expects {module.in_channels} input channels"
    if isinstance(module, nn.Linear):
        return f", it expects {module.in_features} input features"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return f", it expects {module.num_features} channels"
    return ""
