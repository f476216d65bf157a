"""A fixed sample of the mutation benchmark (docs/testing.md), small enough for CI.

Each realistic bug below is written into a temporary copy of the package, one at a time,
and the tests that should catch it are run on that copy in a fresh interpreter: they must
fail (exit status 1, a test failure, not an import or collection error) with the bug and
pass without it. A source line that moved makes its row fail with the line to update, so
the sample cannot silently stop testing anything.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORACLE_BOUNDS = "tests/certify/test_oracle_bounds.py::"


@dataclass(frozen=True)
class PlantedBug:
    name: str
    path: str
    original: str
    planted: str
    tests: tuple[str, ...]


BUGS = (
    PlantedBug("crown returns the IBP fold", "harp_plugin/bounds/engine.py",
               'if method != "ibp":', 'if method == "crown-ibp":',
               (ORACLE_BOUNDS + "test_crown_is_exact_and_strictly_tighter_than_ibp_on_the_v_net",)),
    PlantedBug("ReLU chord intercept with a flipped sign", "harp_plugin/bounds/operators/activation.py",
               "-lower * triangle", "lower * triangle",
               (ORACLE_BOUNDS + "test_crown_is_exact_and_strictly_tighter_than_ibp_on_the_v_net",)),
    PlantedBug("input box not clipped to the data domain (dropped clamp)", "harp_plugin/bounds/spec.py",
               "return (x - eps).clamp(min=lower), (x + eps).clamp(max=upper)", "return x - eps, x + eps",
               (ORACLE_BOUNDS + "test_input_box_is_clipped_to_the_data_domain",)),
    PlantedBug("NRS divides by |gamma| instead of gamma squared", "harp_plugin/bounds/stability.py",
               "gamma.detach() ** 2", "gamma.detach().abs()",
               ("tests/certify/test_oracle_stability.py::test_nrs_scores_match_the_formula_with_gamma_squared",)),
    PlantedBug("certified loss with kappa and 1 - kappa swapped", "harp_plugin/robust/certified.py",
               "crown_share = self.kappa + (1 - self.kappa) * (1 - progress)",
               "crown_share = (1 - self.kappa) + self.kappa * (1 - progress)",
               ("tests/certify/test_oracle_certified_loss.py::"
                "test_crown_ibp_loss_mixes_kappa_crown_ibp_with_one_minus_kappa_ibp",)),
    PlantedBug("TRADES KL arguments swapped", "harp_plugin/robust/losses.py",
               "F.log_softmax(adversarial_logits, dim=1),\n            F.softmax(natural_logits, dim=1),",
               "F.log_softmax(natural_logits, dim=1),\n            F.softmax(adversarial_logits, dim=1),",
               ("tests/core/test_core_oracles.py::test_trades_is_clean_ce_plus_beta_kl_of_natural_to_adversarial",)),
    PlantedBug("robust accuracy computed on clean inputs", "harp_plugin/robust/evaluation.py",
               "collected[attack.name].append(model(adversarial)", "collected[attack.name].append(model(inputs)",
               ("tests/core/test_core_oracles.py::"
                "test_robust_accuracy_is_exactly_the_share_farther_than_eps_from_the_threshold",)),
    PlantedBug("HARP's compression loss without its hinge (dropped clamp)", "harp_plugin/masking/cost.py",
               "torch.relu(self.cost(kept) / budget - 1.0)", "(self.cost(kept) / budget - 1.0)",
               ("tests/harp/test_harp_oracles.py::test_compression_loss_is_the_hinged_relative_overshoot",)),
    PlantedBug("coupled ratio from the narrowest member (min for max)", "harp_plugin/importance/ratios.py",
               "kept = max(", "kept = min(",
               ("tests/harp/test_harp_oracles.py::test_a_coupled_group_keeps_what_its_widest_member_learned",)),
)


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """harp_plugin and the tests in a scratch folder (no bytecode: every run compiles the source)."""
    copy = tmp_path_factory.mktemp("planted")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("harp_plugin", "tests"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def run_tests(copy: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    return subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_targeted_tests_pass_on_the_unchanged_copy(package_copy: Path) -> None:
    tests = sorted({test for bug in BUGS for test in bug.tests})
    result = run_tests(package_copy, tuple(tests))
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("bug", BUGS, ids=[bug.name for bug in BUGS])
def test_each_planted_bug_is_caught(package_copy: Path, bug: PlantedBug) -> None:
    source = package_copy / bug.path
    text = source.read_text()
    assert text.count(bug.original) == 1, f"{bug.path} no longer holds {bug.original!r} once: update BUGS"
    source.write_text(text.replace(bug.original, bug.planted))
    try:
        result = run_tests(package_copy, bug.tests)
    finally:
        source.write_text(text)
    assert result.returncode == 1, f"{bug.name} was not caught:\n{result.stdout[-3000:]}"
