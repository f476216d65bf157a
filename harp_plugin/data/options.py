"""Typed, validated keyword options of the dataset factories.

Factories take ``**options`` so that every dataset shares one call signature; these classes turn
those keywords into checked values, and a misspelt keyword into an error listing the valid ones.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from harp_plugin.data.partition import validate_fractions

OptionsT = TypeVar("OptionsT", bound="SplitOptions")


def require_positive_int(name: str, value: object) -> None:
    """Reject anything but an integer >= 1 (``True`` included), naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SplitOptions:
    """Caps for quick runs: at most ``max_train`` training and ``max_eval`` val/test examples."""

    max_train: int | None = None
    max_eval: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_train", "max_eval"):
            if getattr(self, name) is not None:
                require_positive_int(name, getattr(self, name))


@dataclass(frozen=True)
class BundledOptions(SplitOptions):
    """A bundled set is one pool, cut into train / val / test by ``fractions``."""

    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.fractions, (list, tuple)) or len(self.fractions) != 3:
            raise ValueError(f"fractions must be (train, val, test), got {self.fractions!r}")
        object.__setattr__(self, "fractions", validate_fractions(self.fractions))


@dataclass(frozen=True)
class DigitsOptions(BundledOptions):
    """``input_size`` other than 8 resizes the 8×8 digits bilinearly (28 suits the small CNN)."""

    input_size: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("input_size", self.input_size)


@dataclass(frozen=True)
class TorchvisionOptions(SplitOptions):
    """Validation is the seeded, stratified ``val_fraction`` of torchvision's train split."""

    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        fraction = self.val_fraction
        numeric = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
        if not numeric or not 0 < fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction!r}")


@dataclass(frozen=True)
class ChecksummedOptions(TorchvisionOptions):
    """``verify_checksums=False`` accepts files whose md5 differs (re-packed or test-written)."""

    verify_checksums: bool = True


def parse_options(kind: type[OptionsT], dataset: str, options: Mapping[str, Any]) -> OptionsT:
    """``kind(**options)``, failing on an unknown keyword with the dataset's valid options."""
    valid = sorted(field.name for field in dataclasses.fields(kind))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for dataset {dataset!r}; "
            f"valid options: data_dir, seed, download, {', '.join(valid)}"
        )
    return kind(**options)
