"""Certified accuracy of a model on a data loader: one call, batched, with progress."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from harp_plugin.bounds.backends import bound_function, resolve_backend
from harp_plugin.bounds.engine import unstable_mask
from harp_plugin.bounds.precision import exact_float32
from harp_plugin.bounds.spec import check_eps
from harp_plugin.distributed import gather_objects, is_main, my_batches
from harp_plugin.models.device import model_device
from harp_plugin.models.modes import eval_mode
from harp_plugin.models.shapes import shape_errors_named


@dataclass
class CertifiedAccuracy:
    """What a certification run measured; ``to_dict()`` is JSON-serialisable.

    ``unstable_relus[name]`` counts neurons of that ReLU layer unstable on the ε-ball, summed
    over samples; ``relu_neurons[name]`` the matching total, so their ratio is a fraction.
    """

    certified_accuracy: float
    clean_accuracy: float
    certified: int
    correct: int
    total: int
    eps: float
    method: str
    backend: str
    unstable_relus: dict[str, int] = field(default_factory=dict)
    relu_neurons: dict[str, int] = field(default_factory=dict)

    @property
    def unstable_fraction(self) -> float:
        """Unstable neurons over all ReLU neurons (0 when the model has none)."""
        total = sum(self.relu_neurons.values())
        return sum(self.unstable_relus.values()) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unstable_fraction": self.unstable_fraction}


def certified_accuracy(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    eps: float,
    method: str = "crown-ibp",
    backend: str = "auto",
    device: Optional[torch.device | str] = None,
    progress: bool = True,
    lower: float = 0.0,
    upper: float = 1.0,
) -> CertifiedAccuracy:
    """Fraction of samples whose margins e_y − e_j all have a lower bound > 0 on the ε-ball.

    Runs the model in eval mode (restored afterwards) without gradients, where the model is;
    ``device``, if given, must be that device (nothing is moved). Under torch.distributed each
    rank bounds its share of the batches and the counts are summed over ranks.
    """
    eps = check_eps(eps)
    resolved = resolve_backend(backend, method)
    device = model_device(model, device)
    counts, unstable, neurons = Counter(), Counter(), Counter()
    bounds = None
    with eval_mode(model), torch.no_grad(), exact_float32():
        for x, y in tqdm(my_batches(loader), desc=f"certify {method} eps={eps:g}", disable=not (progress and is_main())):
            x, y = x.to(device), y.to(device)
            with shape_errors_named(model, x):
                bounds = bounds or bound_function(model, x, method, resolved, lower, upper)
                result = bounds(x, eps, y)
            counts["certified"] += int(result.certified().sum())
            counts["correct"] += int((model(x).argmax(1) == y).sum())
            counts["total"] += y.numel()
            for name, (low, high) in result.preactivations.items():
                unstable[name] += int(unstable_mask(low, high).sum())
                neurons[name] += low.numel()
    counts, unstable, neurons = (sum(shares, Counter()) for shares in zip(*gather_objects((counts, unstable, neurons))))
    total = counts["total"]
    if total == 0:
        raise ValueError("certified_accuracy got an empty data loader (it yields no batch)")
    return CertifiedAccuracy(
        certified_accuracy=counts["certified"] / total,
        clean_accuracy=counts["correct"] / total,
        certified=counts["certified"], correct=counts["correct"], total=total,
        eps=eps, method=method.lower(), backend=resolved,
        unstable_relus=dict(unstable), relu_neurons=dict(neurons),
    )


@dataclass(frozen=True)
class Certifier:
    """A configured certification method: ``certifier(model, loader, eps)``."""

    method: str = "crown-ibp"
    backend: str = "auto"
    progress: bool = True

    def __call__(
        self, model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], eps: float,
        device: Optional[torch.device | str] = None,
    ) -> CertifiedAccuracy:
        return certified_accuracy(model, loader, eps, self.method, self.backend, device, self.progress)
