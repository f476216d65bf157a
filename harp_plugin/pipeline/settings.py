"""What each run setting means and accepts, declared once next to the field.

``setting(default, "help", ...)`` puts the one-line help, the allowed range, fixed choices or
the registry kind whose names are allowed into the dataclass field's metadata. The CLI builds
its flags (help text, choices, parse-time checks) and the config loader its checks from that
metadata, so a new ``RunConfig`` field gets both by declaring it with :func:`setting`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Range:
    """An interval, closed unless told: ``Range(0, 1, high_open=True)`` is [0, 1)."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above_low = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return above_low
        return above_low and (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE_INT = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
UNIT = Range(0.0, 1.0)


def setting(
    default: Any,
    help: str,
    *,
    valid: Range | None = None,
    choices: Sequence[str] | None = None,
    registry: str | None = None,
) -> Any:
    """A dataclass field whose metadata documents and constrains it (see the module docstring).

    ``registry`` names a component kind (``"datasets"``, ``"attacks"`` ...): the value (or each
    value of a list) must be a name registered for that kind, third-party plugins' included.
    """
    metadata = {"help": help, "valid": valid, "choices": tuple(choices) if choices else None, "registry": registry}
    return dataclasses.field(default=default, metadata=metadata)


def field_help(field: dataclasses.Field) -> str:
    """The field's one-line help (empty when it was declared without :func:`setting`)."""
    return field.metadata.get("help", "")


def check_value(field: dataclasses.Field, value: Any) -> None:
    """Raise ``ValueError`` naming the setting when ``value`` is outside its range or choices.

    Registry names are checked separately (:func:`check_registered`): building the registry
    imports every plugin, which plain config construction should not need.
    """
    valid: Range | None = field.metadata.get("valid")
    if valid is not None and value is not None and (_not_a_number(value) or value not in valid):
        raise ValueError(f"{field.name} must be {valid.describe()}, got {value!r}")
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{field.name} must be {listed}, got {value!r}")


def _not_a_number(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float))


def check_registered(field: dataclasses.Field, value: Any) -> None:
    """Each name in ``value`` must be registered for the field's registry kind (if it has one)."""
    kind = field.metadata.get("registry")
    if kind is None or value is None:
        return
    from harp_plugin.registry import get_registry

    registry = get_registry()
    for name in (value if isinstance(value, tuple) else (value,)):
        registry.get(kind, name)


def describe_choices(field: dataclasses.Field) -> tuple[str, ...]:
    """The names a field accepts (fixed choices or the registry's current names), or ``()``."""
    if field.metadata.get("choices"):
        return field.metadata["choices"]
    kind = field.metadata.get("registry")
    if kind is None:
        return ()
    from harp_plugin.registry import get_registry

    return tuple(get_registry().names(kind))
