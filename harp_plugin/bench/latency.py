"""Measured forward latency: the number MAC counts do not give (pruned layers may not run faster)."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from harp_plugin.models.modes import eval_mode

_WARM_UP = 3


@torch.inference_mode()
def median_latency(model: nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """Median wall time in seconds of ``model(inputs)`` in eval mode over ``repeats`` runs,
    after a few warm-up runs (CUDA work is synchronised before each clock read)."""
    synchronise = torch.cuda.synchronize if inputs.is_cuda else (lambda: None)
    times = []
    with eval_mode(model):
        for index in range(_WARM_UP + repeats):
            synchronise()
            start = time.perf_counter()
            model(inputs)
            synchronise()
            if index >= _WARM_UP:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
