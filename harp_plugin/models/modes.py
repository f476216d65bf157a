"""Run a model in eval mode and hand it back in the mode it came in."""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Scoring, evaluation and bound propagation must not update BN statistics or apply dropout,
    and must not leave a model that was training in eval mode (methods.md §7). Each submodule
    gets its own mode back: a frozen BatchNorm inside a training model stays frozen."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
