"""Hook specifications: one hook per kind of component a plugin can contribute.

Each hook returns a mapping ``name -> factory``; a factory is any callable (usually a
class) that builds the component from keyword arguments. Built-in components register
through these same hooks, so a third-party plugin is a first-class citizen.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pluggy

PROJECT_NAME = "harp_plugin"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Factories = Mapping[str, Callable[..., Any]]


@hookspec
def harp_importances() -> Factories:
    """Channel/weight importance criteria (``tp.importance.Importance`` factories)."""


@hookspec
def harp_attacks() -> Factories:
    """Evaluation attacks: ``factory(model, eps=..., **kw)`` returning an attack."""


@hookspec
def harp_losses() -> Factories:
    """Training losses: factories of ``loss(model, x, y) -> Tensor`` callables."""


@hookspec
def harp_transforms() -> Factories:
    """Structural pruning transforms that rebuild layers instead of removing channels:
    ``factory(**kw)`` returns ``transform(model, kept_fraction, example_inputs)`` (in place)."""


@hookspec
def harp_certifiers() -> Factories:
    """Bound-propagation methods used for certified evaluation."""


@hookspec
def harp_schedulers() -> Factories:
    """Pruning-ratio or penalty schedulers."""


@hookspec
def harp_datasets() -> Factories:
    """Datasets: ``factory(data_dir=..., seed=..., **kw)`` returning a ``DataSplits``."""


@hookspec
def harp_models() -> Factories:
    """Models: ``factory(num_classes=..., in_channels=..., input_size=...)``."""


KINDS: tuple[str, ...] = (
    "importances",
    "transforms",
    "attacks",
    "losses",
    "certifiers",
    "schedulers",
    "datasets",
    "models",
)
