"""Run configuration from defaults, YAML/TOML files and flags, with clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from harp_plugin.pipeline.config import RunConfig, build_config, load_config_file, resolve_device


def test_defaults_are_the_documented_main_job() -> None:
    config = RunConfig()
    assert (config.dataset, config.model, config.method, config.pruning_ratio) == ("mnist5k", "small-cnn", "magnitude", 0.5)


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_files_are_read_and_flags_override_them(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        path.write_text("eps: 0.3\npruning_ratio: 0.75\neval_attacks: [pgd, apgd]\nprogress: false\n")
    else:
        path.write_text('eps = 0.3\npruning_ratio = 0.75\neval_attacks = ["pgd", "apgd"]\nprogress = false\n')
    config = build_config(load_config_file(path), pruning_ratio="0.25", seed=None)
    assert config.eps == 0.3 and config.pruning_ratio == 0.25 and config.seed == 0
    assert config.eval_attacks == ("pgd", "apgd") and config.progress is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"eps": -0.1}, r"eps must be in \[0, 1\].*got -0.1"),
        ({"eps": 1.5}, r"eps must be in \[0, 1\].*got 1.5"),
        ({"pruning_ratio": 1.0}, r"pruning_ratio must be in \[0, 1\), got 1.0"),
        ({"pruning_ratio": -0.2}, r"pruning_ratio must be in \[0, 1\), got -0.2"),
        ({"eps": "wide"}, r"setting 'eps': cannot use 'wide' as float"),
        ({"progress": "maybe"}, r"setting 'progress': cannot use 'maybe' as bool"),
        ({"epochs": 3}, r"unknown setting 'epochs' \(did you mean 'prune_epochs'\?\)"),
        ({"xyzzy": 3}, r"unknown setting 'xyzzy'; valid settings: dataset, data_dir"),
        ({"batch_size": 0}, r"batch_size must be >= 1, got 0"),
    ],
)
def test_bad_values_name_the_setting(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_config(values)


def test_bad_config_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config_file(tmp_path / "absent.yaml")
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ValueError, match="use a .yaml, .yml or .toml file"):
        load_config_file(tmp_path / "run.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config_file(tmp_path / "list.yaml")


def test_device_auto_picks_what_exists() -> None:
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
