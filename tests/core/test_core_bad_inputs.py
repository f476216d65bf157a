"""Bad input, one table: every row must fail with a message naming the problem and leave the
folder it worked in exactly as it was (nothing half-written, no temporary files).

Rows cover the config files, the checkpoints, the datasets, the Python API (``fit``,
``compute_bounds``, ``certified_accuracy``, ``HarpImportance``, the schedulers, the registry)
and the ``harp-prune`` command line (one line on stderr, non-zero exit).
"""
from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin import (
    GeometricScheduler, HarpImportance, IncrementalGamma, PGDATLoss, TrainConfig, certified_accuracy, compute_bounds, fit,
)
from harp_plugin.cli.main import main
from harp_plugin.data import load_dataset, make_loaders
from harp_plugin.data.splits import DataSplits
from harp_plugin.models import small_cnn
from harp_plugin.pipeline.config import RunConfig, build_config, load_config_file
from harp_plugin.registry import get_registry
from harp_plugin.reports import check_writable
from harp_plugin.robust.checkpoint import load_checkpoint, load_model_state, save_checkpoint


def tiny_model(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return small_cnn(num_classes=3, input_size=8, width=width)


def images(n: int = 4, channels: int = 1, size: int = 8, fill: float | None = None) -> torch.Tensor:
    if fill is not None:
        return torch.full((n, channels, size, size), fill)
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


LABELS = torch.tensor([0, 1, 2, 0])


def loader(x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> DataLoader:
    x = images() if x is None else x
    y = LABELS[: len(x)] if y is None else y
    return DataLoader(TensorDataset(x, y), batch_size=2)


EMPTY = DataLoader(TensorDataset(images()[:0], LABELS[:0]), batch_size=2)


def quick_fit(model: nn.Module, train: DataLoader, **config: Any) -> Any:
    return fit(model, PGDATLoss(0.1, steps=1), train, loader(), TrainConfig(epochs=1, **config), progress=False)


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def write_checkpoint(name: str, payload: Any) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        torch.save(payload() if callable(payload) else payload, folder / name)
    return setup


def truncated_checkpoint(folder: Path) -> None:
    save_checkpoint({"model": tiny_model().state_dict()}, folder / "ck.pt")
    data = (folder / "ck.pt").read_bytes()
    (folder / "ck.pt").write_bytes(data[: len(data) // 2])


def a_run_folder(pruned: bytes | None = None, report: str | None = None) -> Callable[[Path], None]:
    """What `harp-prune run` leaves: report.json (its settings) and the checkpoints."""
    def setup(folder: Path) -> None:
        run = folder / "run"
        run.mkdir()
        config = RunConfig(max_train=200, max_eval=20, model_width=4).to_dict()
        (run / "report.json").write_text(report if report is not None else json.dumps({"config": config}))
        if pruned is not None:
            (run / "pruned.pt").write_bytes(pruned)
    return setup


def disk_full_during_save(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write fails half-way (ENOSPC) after some bytes reached the temporary file."""
    def half_written(payload: Any, stream: Any) -> None:
        stream.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_written)
    save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 2}, folder / "ck.pt")


def read_only_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only folder, simulated (tests may run as root, which ignores permissions)."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(folder / "out"))

    (folder / "out").mkdir()
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    check_writable(folder / "out")


def empty_split(_: Path) -> None:
    x = images()
    splits = DataSplits("toy", TensorDataset(x, LABELS), TensorDataset(x[:0], LABELS[:0]), TensorDataset(x, LABELS),
                        3, 1, 8, (0.5,), (0.5,))
    make_loaders(splits, batch_size=2)


class Softmaxed(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(64, 3), nn.Softmax(dim=1))


def nan_weights() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    return model


@dataclass(frozen=True)
class Row:
    """``act(folder)`` (or ``act(folder, monkeypatch)``) must raise ``error`` matching ``message``."""

    id: str
    act: Callable[..., Any]
    error: type[BaseException]
    message: str
    setup: Callable[[Path], None] | None = None
    kept: tuple[str, ...] = ()  # files the setup wrote that must survive unchanged (checked anyway)


API_ROWS = [
    # config files
    Row("yaml-malformed", lambda d: load_config_file(d / "bad.yaml"), ValueError,
        r"bad\.yaml, line 2, column 13: malformed YAML: mapping values are not allowed here",
        write("bad.yaml", "eps: 0.1\nmethod: harp: hydra\n")),
    Row("yaml-unclosed-list", lambda d: load_config_file(d / "list.yml"), ValueError,
        r"list\.yml, line 3, column 1: malformed YAML: .*\(while parsing a flow sequence at line 2, column 15\)",
        write("list.yml", "eps: 0.1\neval_attacks: [pgd\n")),
    Row("yaml-tab-indent", lambda d: load_config_file(d / "tab.yml"), ValueError,
        r"tab\.yml, line 2, column 1: malformed YAML", write("tab.yml", "eps: 0.1\n\tmethod: harp\n")),
    Row("toml-malformed", lambda d: load_config_file(d / "bad.toml"), ValueError,
        r"bad\.toml, line 2, column \d+: malformed TOML", write("bad.toml", 'eps = 0.1\nmethod = "harp\n')),
    Row("yaml-not-a-mapping", lambda d: load_config_file(d / "list.yaml"), ValueError,
        r"must hold a mapping of settings, got list", write("list.yaml", "- eps\n- 0.1\n")),
    Row("yaml-unknown-key", lambda d: load_config_file(d / "typo.yaml"), ValueError,
        r"unknown setting 'pruning_rate' \(did you mean 'pruning_ratio'\?\) in '.*typo\.yaml'",
        write("typo.yaml", "pruning_rate: 0.5\n")),
    Row("toml-unknown-key", lambda d: load_config_file(d / "typo.toml"), ValueError,
        r"unknown setting 'finetune_epoch' .*did you mean 'finetune_epochs'", write("typo.toml", "finetune-epoch = 3\n")),
    Row("config-wrong-suffix", lambda d: load_config_file(d / "run.json"), ValueError,
        r"use a \.yaml, \.yml or \.toml file, not '\.json'", write("run.json", "{}")),
    Row("config-missing", lambda d: load_config_file(d / "absent.yaml"), FileNotFoundError, r"absent\.yaml' does not exist"),
    Row("config-not-utf8", lambda d: load_config_file(d / "latin.yaml"), ValueError,
        r"latin\.yaml' is not UTF-8 text", write("latin.yaml", b"eps: 0.1 # \xe9\xe8\n")),
    Row("config-value-type", lambda d: build_config({"eps": "wide"}), ValueError, r"setting 'eps': cannot use 'wide' as float"),
    Row("config-fractional-int", lambda d: build_config({"max_train": 2.5}), ValueError,
        r"setting 'max_train': cannot use 2\.5 as int \(not a whole number\)"),
    Row("config-unknown-dataset", lambda d: build_config({"dataset": "imagenet"}), ValueError,
        r"unknown dataset 'imagenet'; available: cifar10"),
    Row("config-out-of-range", lambda d: build_config({"pruning_ratio": 1.0}), ValueError,
        r"pruning_ratio must be in \[0, 1\), got 1\.0"),
    # checkpoints
    Row("checkpoint-truncated", lambda d: load_checkpoint(d / "ck.pt", "cpu"), ValueError,
        r"ck\.pt' is corrupt or not a harp-prune checkpoint", truncated_checkpoint),
    Row("checkpoint-text-file", lambda d: load_checkpoint(d / "notes.pt", "cpu"), ValueError,
        r"notes\.pt' is corrupt or not a harp-prune checkpoint \(KeyError", write("notes.pt", "hello, not a checkpoint")),
    Row("checkpoint-pickled-code", lambda d: load_checkpoint(d / "evil.pt", "cpu"), ValueError,
        r"evil\.pt' is corrupt or not a harp-prune checkpoint \(UnpicklingError",
        write_checkpoint("evil.pt", {"payload": Path("x")})),
    Row("checkpoint-not-a-dict", lambda d: load_checkpoint(d / "list.pt", "cpu"), ValueError,
        r"list\.pt' is corrupt or not a harp-prune checkpoint \(it holds a list", write_checkpoint("list.pt", [1, 2])),
    Row("checkpoint-missing", lambda d: load_checkpoint(d / "absent.pt", "cpu"), ValueError, r"absent\.pt' does not exist"),
    Row("checkpoint-other-architecture",
        lambda d: load_model_state(nn.Sequential(nn.Linear(3, 2)), load_checkpoint(d / "ck.pt", "cpu")["model"]),
        ValueError, r"does not fit the model: missing \['0\.bias', '0\.weight'\]",
        write_checkpoint("ck.pt", lambda: {"model": tiny_model().state_dict()})),
    Row("checkpoint-wider-model", lambda d: load_model_state(tiny_model(4), load_checkpoint(d / "ck.pt", "cpu")["model"]),
        ValueError, r"(?s)does not fit the model: .*size mismatch for 1\.0\.weight: copying a param with shape "
        r"torch\.Size\(\[8, 1, 3, 3\]\) from checkpoint, the shape in current model is torch\.Size\(\[4, 1, 3, 3\]\)",
        write_checkpoint("ck.pt", lambda: {"model": tiny_model(8).state_dict()})),
    Row("checkpoint-disk-full", disk_full_during_save, OSError, r"No space left on device",
        write_checkpoint("ck.pt", {"model": {"w": torch.ones(3)}, "epoch": 1}), kept=("ck.pt",)),
    Row("output-folder-read-only", read_only_folder, OSError, r"output folder '.*out' is not writable: Permission denied"),
    Row("output-folder-is-a-file", lambda d: check_writable(d / "taken"), OSError,
        r"output folder '.*taken' is not writable", write("taken", "a file, not a folder")),
    # datasets
    Row("dataset-unknown", lambda d: load_dataset("imagenet"), KeyError, r"unknown dataset 'imagenet'; available:"),
    Row("dataset-zero-cap", lambda d: load_dataset("mnist5k", max_train=0), ValueError,
        r"max_train must be a positive integer, got 0"),
    Row("dataset-empty-split", empty_split, ValueError, r"the val split of dataset 'toy' is empty"),
    Row("dataset-missing-files", lambda d: load_dataset("mnist", data_dir=d / "nowhere"), Exception, r"nowhere"),
    # fit
    Row("fit-empty-loader", lambda d: quick_fit(tiny_model(), EMPTY), ValueError, r"training data loader is empty"),
    Row("fit-nan-inputs", lambda d: quick_fit(tiny_model(), loader(images(fill=float("nan")))), FloatingPointError,
        r"training loss became nan at epoch 1, batch 1"),
    Row("fit-wrong-channels", lambda d: quick_fit(tiny_model(), loader(images(channels=3))), ValueError,
        r"layer '1\.0' \(Conv2d\) cannot take input of shape \(1, 3, 8, 8\), it expects 1 input channels"),
    Row("fit-frozen-model", lambda d: quick_fit(tiny_model().requires_grad_(False), loader()), ValueError,
        r"no trainable parameter"),
    Row("trainconfig-epochs", lambda d: TrainConfig(epochs=-1), ValueError, r"epochs must be >= 0, got -1"),
    Row("trainconfig-optimizer", lambda d: TrainConfig(epochs=1, optimizer="rmsprop"), ValueError,
        r"optimizer must be 'sgd' or 'adam', got 'rmsprop'"),
    # compute_bounds
    Row("bounds-wrong-channels", lambda d: compute_bounds(tiny_model(), images(channels=3), 0.1), ValueError,
        r"layer '1\.0' \(Conv2d\) cannot take input of shape \(1, 3, 8, 8\), it expects 1 input channels"),
    Row("bounds-wrong-size", lambda d: compute_bounds(tiny_model(), images(size=9), 0.1), ValueError,
        r"layer '\d+' \(Linear\) cannot take input of shape \(1, 144\), it expects 64 input features"),
    Row("bounds-unbatched", lambda d: compute_bounds(tiny_model(), torch.rand(64), 0.1), ValueError,
        r"input x must be a batch of shape \(B, \.\.\.\), got shape \(64,\)"),
    Row("bounds-nan-input", lambda d: compute_bounds(tiny_model(), images(fill=float("nan")), 0.1), ValueError,
        r"input x contains NaN"),
    Row("bounds-nan-weights", lambda d: compute_bounds(nan_weights(), images(), 0.1), ArithmeticError,
        r"bounds at '1' contain NaN"),
    Row("bounds-negative-eps", lambda d: compute_bounds(tiny_model(), images(), -0.1), ValueError,
        r"eps must be a finite number >= 0, got -0\.1"),
    Row("bounds-unknown-method", lambda d: compute_bounds(tiny_model(), images(), 0.1, method="exact"), ValueError,
        r"unknown bound method 'exact'"),
    Row("bounds-label-range", lambda d: compute_bounds(tiny_model(), images(), 0.1, y=torch.tensor([0, 1, 2, 5])),
        ValueError, r"class index 5 is out of range for a model with 3 outputs"),
    Row("bounds-label-count", lambda d: compute_bounds(tiny_model(), images(), 0.1, y=torch.tensor([0, 1])), ValueError,
        r"got 2 labels for a batch of 4"),
    Row("bounds-normalised-input", lambda d: compute_bounds(tiny_model(), images() * 3 - 1, 0.1), ValueError,
        r"outside the valid range \[0\.0, 1\.0\]; pass un-normalised pixels"),
    Row("bounds-unsupported-layer", lambda d: compute_bounds(Softmaxed(), images(), 0.1), TypeError,
        r"layer '2' of type Softmax is not supported"),
    # certified_accuracy
    Row("certify-empty-loader", lambda d: certified_accuracy(tiny_model(), EMPTY, 0.1, progress=False), ValueError,
        r"empty data loader"),
    Row("certify-wrong-shape",
        lambda d: certified_accuracy(tiny_model(), loader(images(channels=3)), 0.1, backend="native", progress=False),
        ValueError, r"layer '1\.0' \(Conv2d\) cannot take input of shape \(1, 3, 8, 8\)"),
    Row("certify-nan-inputs",
        lambda d: certified_accuracy(tiny_model(), loader(images(fill=float("nan"))), 0.1, backend="native", progress=False),
        ValueError, r"input x contains NaN"),
    Row("certify-unknown-backend", lambda d: certified_accuracy(tiny_model(), loader(), 0.1, backend="gpu"), ValueError,
        r"unknown backend 'gpu'"),
    Row("certify-unknown-method",
        lambda d: certified_accuracy(tiny_model(), loader(), 0.1, method="exact", backend="native"), ValueError,
        r"supports methods .* not 'exact'"),
    # HarpImportance
    Row("harp-target-zero", lambda d: HarpImportance(0.0), ValueError, r"target_kept .* strictly between 0 and 1.* got 0\.0"),
    Row("harp-target-one", lambda d: HarpImportance(1.0), ValueError, r"target_kept .* got 1\.0: nothing would be pruned"),
    Row("harp-target-above-one", lambda d: HarpImportance(1.5), ValueError, r"target_kept .* got 1\.5"),
    Row("harp-unknown-method", lambda d: HarpImportance(0.5, method="magic"), ValueError,
        r"method must be 'harp', 'hydra' or 'lwm', got 'magic'"),
    Row("harp-alpha", lambda d: HarpImportance(0.5, alpha=2.0), ValueError, r"alpha .* must be in \(0, 1\], got 2\.0"),
    Row("harp-not-fitted", lambda d: HarpImportance(0.5)(None), Exception, r"is not fitted: call imp\.fit"),
    Row("harp-fit-empty-loader", lambda d: HarpImportance(0.5).fit(tiny_model(), EMPTY, loss=PGDATLoss(0.1, steps=1)),
        ValueError, r"empty train_loader"),
    Row("harp-fit-wrong-shape",
        lambda d: HarpImportance(0.5).fit(tiny_model(), loader(images(channels=3)), loss=PGDATLoss(0.1, steps=1)),
        Exception, r"layer '1\.0' \(Conv2d\) cannot take input of shape \(1, 3, 8, 8\), it expects 1 input channels"),
    # schedulers and registry
    Row("gamma-negative", lambda d: IncrementalGamma(-1.0), ValueError, r"gamma0 must be a finite number >= 0, got -1"),
    Row("gamma-zero-period", lambda d: IncrementalGamma(0.01, period=0), ValueError, r"period must be a positive number"),
    Row("geometric-rate", lambda d: GeometricScheduler(1.5), ValueError, r"rate must be in \(0, 1\), got 1\.5"),
    Row("geometric-ratio", lambda d: GeometricScheduler()(1.0, 3), ValueError, r"pruning_ratio must be in \[0, 1\), got 1\.0"),
    Row("geometric-steps", lambda d: GeometricScheduler()(0.5, 0), ValueError, r"steps must be >= 1, got 0"),
    Row("registry-unknown-attack", lambda d: get_registry().get("attacks", "laser"), KeyError,
        r"unknown attack 'laser'; available: apgd"),
]


@dataclass(frozen=True)
class CliRow:
    """``harp-prune argv`` (``{d}`` = the folder) must exit non-zero with one line naming the problem."""

    id: str
    argv: tuple[str, ...]
    message: str
    setup: Callable[[Path], None] | None = None


QUICK = ("--max-train", "200", "--max-eval", "20", "--pretrain-epochs", "0", "--finetune-epochs", "0", "--no-progress")

CLI_ROWS = [
    CliRow("cli-malformed-yaml", ("run", "--config", "{d}/bad.yaml"), r"bad\.yaml, line 2, column 13: malformed YAML",
           write("bad.yaml", "eps: 0.1\nmethod: harp: hydra\n")),
    CliRow("cli-unknown-key", ("run", "--config", "{d}/run.toml"), r"unknown setting 'epsilon' .*did you mean 'eps'",
           write("run.toml", "epsilon = 0.1\n")),
    CliRow("cli-unknown-method", ("run", "--method", "psychic"), r"argument --method: unknown importance 'psychic'"),
    CliRow("cli-nan-eps", ("run", "--eps", "nan"), r"argument --eps: eps must be in \[0, 1\], got nan"),
    CliRow("cli-zero-batch", ("run", "--batch-size", "0"), r"argument --batch-size: batch_size must be >= 1, got 0"),
    CliRow("cli-out-dir-is-a-file", ("run", *QUICK, "--out-dir", "{d}/taken"), r"output folder '.*taken' is not writable",
           write("taken", "x")),
    CliRow("cli-certify-no-run", ("certify", "--run-dir", "{d}/nothing"), r"nothing/report\.json' does not exist"),
    CliRow("cli-certify-bad-report", ("certify", "--run-dir", "{d}/run"), r"report\.json' is not a harp-prune run report",
           a_run_folder(report="{not json")),
    CliRow("cli-certify-corrupt-checkpoint", ("certify", "--run-dir", "{d}/run", "--no-progress"),
           r"checkpoint '.*run/pruned\.pt' is corrupt or not a harp-prune checkpoint", a_run_folder(pruned=b"\x00" * 64)),
    CliRow("cli-certify-out-is-a-file", ("certify", "--run-dir", "{d}/run", "--out", "{d}/run/report.json"),
           r"output folder '.*report\.json' is not writable", a_run_folder(pruned=b"")),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes (temporary files included)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def test_the_table_has_at_least_forty_rows() -> None:
    assert len(API_ROWS) + len(CLI_ROWS) >= 40
    assert len({row.id for row in API_ROWS + CLI_ROWS}) == len(API_ROWS) + len(CLI_ROWS)


@pytest.mark.parametrize("row", API_ROWS, ids=[row.id for row in API_ROWS])
def test_bad_input_is_a_clear_error_and_changes_nothing(row: Row, tmp_path: Path, monkeypatch) -> None:
    if row.setup is not None:
        row.setup(tmp_path)
    before = snapshot(tmp_path)
    arguments = (tmp_path, monkeypatch) if row.act.__code__.co_argcount == 2 else (tmp_path,)
    with pytest.raises(row.error, match=row.message):
        row.act(*arguments)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before, "a failing call left a changed or half-written file behind"
    for name in row.kept:
        assert load_checkpoint(tmp_path / name, "cpu")["epoch"] == 1, "the previous checkpoint must stay loadable"


@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.id for row in CLI_ROWS])
def test_bad_cli_input_is_one_line_and_changes_nothing(row: CliRow, tmp_path: Path, capsys) -> None:
    if row.setup is not None:
        row.setup(tmp_path)
    before = snapshot(tmp_path)
    argv = [argument.replace("{d}", str(tmp_path)) for argument in row.argv]
    if "--out-dir" not in argv and argv[0] == "run":
        argv += ["--out-dir", str(tmp_path / "out")]
    code = main(argv)
    error = capsys.readouterr().err
    assert code != 0
    lines = [line for line in error.splitlines() if not line.startswith("harp-prune: warning:")]
    assert len(lines) == 1 and lines[0].startswith("harp-prune: error: "), error
    assert "Traceback" not in error
    assert re.search(row.message, lines[0]), lines[0]
    assert snapshot(tmp_path) == before, "a failing command left a changed or half-written file behind"
    assert not (tmp_path / "out").exists(), "nothing is created before the input is checked"


def test_too_small_dataset_warns_naming_the_minimum() -> None:
    with pytest.warns(UserWarning, match=r"training split has 3 images, below the minimum of 100 \(10 per class"):
        load_dataset("mnist5k", max_train=3)
