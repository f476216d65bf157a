"""Checks that a model fits the pipeline before any time is spent training it."""
from __future__ import annotations

import torch
from torch import nn

from harp_plugin.models.modes import eval_mode


def check_classifier_output(
    model: nn.Module, example_inputs: torch.Tensor, num_classes: int
) -> None:
    """Fail early, naming the shape, unless ``model(x)`` is ``(N, num_classes)``."""
    try:
        with eval_mode(model), torch.no_grad():
            output = model(example_inputs)
    except RuntimeError as error:
        raise ValueError(
            f"model cannot run on inputs of shape {tuple(example_inputs.shape)}: {error}"
        ) from error
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"model must return a tensor of logits, got {type(output).__name__}")
    expected = (example_inputs.shape[0], num_classes)
    if tuple(output.shape) != expected:
        raise ValueError(
            f"model output has shape {tuple(output.shape)}; expected (N, classes) = {expected}"
        )


def final_classifier(model: nn.Module) -> nn.Module:
    """The last Linear layer: Torch-Pruning must ignore it or the model loses classes."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier to protect")
    return linears[-1]
