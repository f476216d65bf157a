"""The pluggy registry: built-ins, errors that name names, third-party entry points."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch_pruning as tp

from harp_plugin.registry import (
    DuplicateComponentError,
    UnknownComponentError,
    build_registry,
    hookimpl,
)

EXTERNAL_PLUGIN = textwrap.dedent(
    '''
    import torch, torch_pruning as tp
    from harp_plugin.registry import hookimpl

    class LastChannelsFirstImportance(tp.importance.Importance):
        """Scores channels by index: a deterministic toy criterion for the tests."""
        def __call__(self, group):
            return torch.arange(len(group[0].idxs), dtype=torch.float32)

    @hookimpl
    def harp_importances():
        return {"index-order": LastChannelsFirstImportance}
    '''
)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real distribution on sys.path declaring a ``harp_plugin`` entry point."""
    (tmp_path / "toy_harp_plugin.py").write_text(EXTERNAL_PLUGIN)
    dist_info = tmp_path / "toy_harp_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-harp-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[harp_plugin]\ntoy = toy_harp_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_of_every_kind_are_registered() -> None:
    registry = build_registry(load_entry_points=False)
    assert {"magnitude", "taylor", "random"} <= set(registry.names("importances"))
    assert {"pgd", "fgsm", "trades-pgd", "apgd", "autoattack-light"} <= set(registry.names("attacks"))
    assert {"pgd-at", "trades", "mart"} <= set(registry.names("losses"))
    assert {"mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "svhn"} <= set(registry.names("datasets"))
    assert {"small-cnn", "cifar-model-deep", "vgg16-bn", "resnet18"} <= set(registry.names("models"))


def test_names_are_case_and_separator_insensitive() -> None:
    registry = build_registry(load_entry_points=False)
    assert registry.get("models", "Small_CNN") is registry.get("models", "small-cnn")


def test_unknown_name_lists_the_available_ones() -> None:
    registry = build_registry(load_entry_points=False)
    with pytest.raises(UnknownComponentError, match=r"unknown importance 'nope'; available: .*magnitude"):
        registry.get("importances", "nope")
    with pytest.raises(UnknownComponentError, match="unknown component kind 'widgets'"):
        registry.names("widgets")


def test_duplicate_name_fails_naming_both_plugins() -> None:
    registry = build_registry(load_entry_points=False)

    class Clash:
        @hookimpl
        def harp_importances(self) -> dict:
            return {"Magnitude": tp.importance.RandomImportance}

    with pytest.raises(DuplicateComponentError, match=r"harp_plugin\.importance\.plugin.*'clash'"):
        registry.register(Clash(), name="clash")
    assert isinstance(registry.create("importances", "magnitude"), tp.importance.GroupMagnitudeImportance)


def test_entry_point_plugin_is_usable_by_name_from_python(installed_plugin: Path) -> None:
    registry = build_registry()
    assert registry.owner("importances", "index-order") == "toy"
    importance = registry.create("importances", "index-order")
    assert isinstance(importance, tp.importance.Importance)


@pytest.mark.slow
def test_entry_point_plugin_is_usable_by_name_from_the_cli(installed_plugin: Path, tmp_path: Path) -> None:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed_plugin), *sys.path]))
    listed = subprocess.run(
        [sys.executable, "-m", "harp_plugin.cli.main", "list", "importances"],
        capture_output=True, text=True, env=environment, check=True,
    )
    assert "index-order" in listed.stdout
    run = subprocess.run(
        [
            sys.executable, "-m", "harp_plugin.cli.main", "run", "--method", "index-order",
            "--pretrain-epochs", "0", "--finetune-epochs", "0", "--max-train", "64", "--max-eval", "32",
            "--eval-attacks", "fgsm", "--out-dir", str(tmp_path / "run"), "--no-progress",
        ],
        capture_output=True, text=True, env=environment,
    )
    assert run.returncode == 0, run.stderr
    assert "'index-order' importance" in run.stdout
    assert (tmp_path / "run" / "report.json").is_file()


def test_top_level_exports_resolve_to_the_real_objects() -> None:
    import harp_plugin
    from harp_plugin.importance.stability import StabilityImportance
    from harp_plugin.importance.harp import HarpImportance

    assert harp_plugin.HarpImportance is HarpImportance
    assert harp_plugin.StabilityImportance is StabilityImportance
    assert all(getattr(harp_plugin, name) is not None for name in harp_plugin.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        harp_plugin.Nope  # noqa: B018
