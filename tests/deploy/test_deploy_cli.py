"""The run folder ships: `harp-prune export` rebuilds the pruned model from it; bad folders
get one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harp_plugin.cli.main import main
from harp_plugin.robust.checkpoint import save_checkpoint

TINY_RUN = [
    "run", "--pretrain-epochs", "1", "--finetune-epochs", "1", "--max-train", "128", "--max-eval", "32",
    "--model-width", "4", "--train-attack-steps", "1", "--val-attack-steps", "1", "--eval-attacks", "fgsm",
    "--latency-batches", "1,8", "--latency-repeats", "2", "--no-progress",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "run"
    assert main([*TINY_RUN, "--out-dir", str(out)]) == 0
    return out


@pytest.mark.slow
def test_the_run_reports_measured_latency_beside_the_mac_ratio(run_dir: Path) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    rows = report["latency"]
    assert [row["batch"] for row in rows] == [1, 8]
    assert all(row["repeats"] == 2 and row["threads"] >= 1 and row["dense_ms"] > 0 for row in rows)
    mac_ratio = report["dense"]["macs"] / report["pruned"]["macs"]
    markdown = (run_dir / "report.md").read_text()
    assert "median of 2 timed runs after 2 warm-up" in markdown
    assert f"| {mac_ratio:.2f}x |" in markdown and f"{rows[1]['speedup']:.2f}x" in markdown


def test_bad_latency_settings_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--latency-batches", "1,0", "--out-dir", str(tmp_path / "run")]) == 2
    assert "latency_batches must be positive batch sizes, got (1, 0)" in capsys.readouterr().err
    assert main(["run", "--latency-batches", "1,many", "--out-dir", str(tmp_path / "run")]) == 2
    assert "setting 'latency_batches': cannot use '1,many'" in capsys.readouterr().err


@pytest.mark.slow
def test_export_rebuilds_the_runs_pruned_model(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_dir / "exported.pt2"
    assert main(["export", "--run-dir", str(run_dir), "--format", "torch-export", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |torch.export.load - PyTorch| = " in printed and "on 32 test images" in printed
    program = torch.export.load(str(out)).module()
    pruned = json.loads((run_dir / "report.json").read_text())["pruned"]
    assert sum(p.numel() for p in program.parameters()) == pruned["parameters"]


@pytest.mark.slow
def test_a_run_folder_without_structure_record_or_report_is_one_clear_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "report.json").write_text((run_dir / "report.json").read_text())
    save_checkpoint({"model": {}}, old / "pruned.pt")  # what harp-prune wrote before save_pruned
    assert main(["export", "--run-dir", str(old), "--format", "torch-export"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("harp-prune: error: ") and "has no structure record" in error
    assert error.count("\n") == 1 and not (old / "pruned.pt2").exists()
    assert main(["export", "--run-dir", str(tmp_path / "nowhere")]) == 2
    assert "report.json' does not exist" in capsys.readouterr().err
