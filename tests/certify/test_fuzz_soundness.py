"""The soundness fuzz (benchmarks/fuzz_soundness.py) at a reduced size: random architectures
of every family, every bound method, corners, uniform and PGD-pushed points; zero violations.
docs/certification.md reports the 10⁶-point run."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_soundness.py"


def load_fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_soundness", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_reduced_fuzz_finds_no_violation() -> None:
    fuzz = load_fuzz()
    tally = fuzz.fuzz(points=12 * 600, seed=1, points_per_architecture=600)
    assert tally.points >= 12 * 600
    assert set(tally.architectures) | set(tally.refused) == set(fuzz.FAMILIES), "every family was drawn"
    assert {"corner", "uniform", "pgd"} == set(tally.points_by_kind)
    assert set(tally.checks) == {f"{m} {s}" for m in fuzz.METHODS for s in ("outputs", "margins")}
    assert sum(tally.violations.values()) == 0, tally.examples


def test_the_fuzz_catches_an_unsound_bound(monkeypatch) -> None:
    """A bound shrunk by 10% of its width must be caught: the checker is not vacuous."""
    fuzz = load_fuzz()
    real = fuzz.compute_bounds

    def shrunk(*args, **kwargs):
        result = real(*args, **kwargs)
        width = result.upper - result.lower
        result.lower, result.upper = result.lower + 0.1 * width, result.upper - 0.1 * width
        return result

    monkeypatch.setattr(fuzz, "compute_bounds", shrunk)
    tally = fuzz.fuzz(points=6 * 600, seed=2, points_per_architecture=600)
    assert sum(tally.violations.values()) > 0
