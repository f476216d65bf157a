"""Registers the built-in attacks and adversarial training losses."""
from __future__ import annotations

from harp_plugin.registry import hookimpl
from harp_plugin.robust.attacks import ATTACK_FACTORIES
from harp_plugin.robust.losses import LOSS_FACTORIES


@hookimpl
def harp_attacks() -> dict:
    return dict(ATTACK_FACTORIES)


@hookimpl
def harp_losses() -> dict:
    return dict(LOSS_FACTORIES)
