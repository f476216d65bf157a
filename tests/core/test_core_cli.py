"""``harp-prune``: the main job end to end and its error messages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harp_plugin.cli.main import main

QUICK = ["--pretrain-epochs", "1", "--finetune-epochs", "1", "--max-train", "640", "--max-eval", "64", "--no-progress"]


@pytest.mark.slow
def test_main_job_runs_end_to_end_and_writes_its_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--pretrain-epochs", "2", "--max-train", "1000", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "robust accuracy (PGD-20)" in printed and "clean accuracy" in printed
    report = json.loads((out / "report.json").read_text())
    dense, pruned = report["dense"], report["pruned"]
    assert pruned["parameters"] < 0.5 * dense["parameters"], "50% of channels removed ⇒ < 50% parameters"
    assert pruned["macs"] < 0.5 * dense["macs"]
    assert dense["clean_accuracy"] > 0.7, "two short epochs of PGD-AT on mnist5k already learn (chance: 0.1)"
    assert dense["robust_accuracy"]["PGD-20"] > 0.4
    assert pruned["clean_accuracy"] > 0.4
    assert (out / "report.md").read_text().count("|") > 20
    assert (out / "comparison.png").stat().st_size > 1000
    assert {p.name for p in out.iterdir()} >= {"pretrain.pt", "dense.pt", "finetune.pt", "pruned.pt", "dense-same-budget.pt"}
    assert report["epochs"] == {"dense": 2, "dense, same budget": 3, "pruned": 3}
    same = torch.load(out / "same-budget.pt", weights_only=True)
    assert len(same["history"]) == 1, "the same-budget model trains exactly the pruned model's extra epoch"
    assert report["dense_same_budget"]["parameters"] == dense["parameters"]
    assert "training epochs" in printed and "dense, same budget" in printed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'; available: cifar10, digits"),
        (["--model", "alexnet"], "unknown model 'alexnet'; available:"),
        (["--method", "psychic"], "unknown importance 'psychic'; available:"),
        (["--eval-attacks", "laser"], "unknown attack 'laser'; available:"),
        (["--eps", "-1"], "eps must be in [0, 1]"),
        (["--pruning-ratio", "1"], "pruning_ratio must be in [0, 1)"),
        (["--dataset", "cifar10"], "data_dir"),
        (["--mode", "unstructured"], "mode 'unstructured' needs a learned-mask method (harp, hydra, lwm), not 'magnitude'"),
        (["--mode", "sideways"], "mode must be 'channel' or 'unstructured', got 'sideways'"),
        (["--train", "magic"], "train must be 'adversarial' or 'certified', got 'magic'"),
        (["--prune-rounds", "3", "--method", "harp"], "prune_rounds > 1 needs channel mode and a criterion"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
        (["--rewind", "epoch:5"], "rewind epoch 5 is never saved: pre-training has 1 epochs"),
        (["--rewind", "sometimes"], "rewind must be 'none', 'init' or 'epoch:K'"),
        (["--train", "certified", "--certified-kappa", "1.5"], "certified_kappa must be in [0, 1], got 1.5"),
        (["--train", "certified", "--certified-warmup", "-0.1"], "certified_warmup must be in [0, 1], got -0.1"),
        (["--train", "certified", "--certified-ramp", "0.99"], "certified_warmup (0.05) + certified_ramp (0.99) must be <= 1"),
    ],
)
def test_bad_input_exits_with_one_clear_message(flags, message, tmp_path: Path, capsys) -> None:
    assert main(["run", *flags, *QUICK, "--out-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("harp-prune: error: ") and message in error
    assert not (tmp_path / "run" / "pretrain.pt").exists(), "nothing was trained on bad input"


@pytest.mark.slow
def test_fine_grained_hydra_run_reports_its_sparsity(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--method", "hydra", "--mode", "unstructured", "--pruning-ratio", "0.9", "--prune-epochs", "1",
             "--pretrain-epochs", "2", "--finetune-epochs", "2", "--max-train", "1000", "--eval-attacks", "fgsm"]
    assert main(["run", *QUICK, *flags, "--out-dir", str(out)]) == 0
    pruned = json.loads((out / "report.json").read_text())["pruned"]
    assert pruned["sparsity"] == pytest.approx(0.9, abs=0.01), "HYDRA keeps the uniform 10% in every layer"
    assert pruned["nonzero_parameters"] < 0.15 * pruned["parameters"]
    # measured 0.91 clean / 0.77 FGSM (docs/testing.md); chance is 0.1: a pipeline that pruned the
    # wrong weights, never fine-tuned or scored robust accuracy on noise could not get there
    assert pruned["clean_accuracy"] > 0.5 and pruned["robust_accuracy"]["FGSM"] > 0.3


@pytest.mark.slow
def test_certified_stability_run_then_certify_its_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    flags = ["--method", "stability", "--train", "certified", "--pretrain-epochs", "2", "--max-train", "256",
             "--prune-rounds", "2",
             "--max-eval", "48", "--eval-attacks", "fgsm", "--eps", "0.05", "--model-width", "8"]
    assert main(["run", *QUICK, *flags, "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "certified accuracy (IBP)" in printed and "certified accuracy (CROWN-IBP)" in printed
    report = json.loads((out / "report.json").read_text())
    for side in ("dense", "dense_same_budget", "pruned"):
        extras = report[side]["extras"]
        assert 0.0 <= extras["certified accuracy (IBP)"] <= extras["certified accuracy (CROWN-IBP)"] + 1e-9
        assert extras["certified accuracy (CROWN-IBP)"] <= report[side]["clean_accuracy"]
    assert report["pruned"]["parameters"] < report["dense"]["parameters"]
    # this budget is too short to certify anything (docs/testing.md), but removing the most
    # unstable channels first must lower the unstable-ReLU share (measured 0.64 → 0.41)
    unstable = [report[side]["extras"]["unstable ReLU fraction (IBP)"] for side in ("dense", "pruned")]
    assert unstable[1] < 0.8 * unstable[0]
    assert (out / "finetune-round1.pt").is_file(), "the model was retrained between the two rounds"

    assert main(["certify", "--run-dir", str(out), "--method", "ibp", "--no-progress", "--out", str(tmp_path / "cert")]) == 0
    certified = json.loads((tmp_path / "cert" / "certify-pruned-ibp.json").read_text())
    table = (tmp_path / "cert" / "certify-pruned-ibp.md").read_text()
    assert f"| certified accuracy | {certified['certified_accuracy']:.2%} |" in table
    assert certified["certified_accuracy"] == pytest.approx(report["pruned"]["extras"]["certified accuracy (IBP)"])
    assert certified["total"] == 48


def test_certify_without_a_run_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["certify", "--run-dir", str(tmp_path)]) == 2
    assert "report.json' does not exist" in capsys.readouterr().err


def test_config_file_is_used(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('dataset = "imagenet"\n')
    assert main(["run", "--config", str(config), "--out-dir", str(tmp_path / "run")]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


def test_list_shows_every_kind(capsys) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for kind in ("importances", "attacks", "losses", "certifiers", "schedulers", "datasets", "models"):
        assert f"{kind}:" in printed


@pytest.mark.slow
def test_rewound_survivors_carry_the_saved_epochs_weights(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--pretrain-epochs", "2", "--rewind", "epoch:1", "--prune-rounds", "2", "--finetune-epochs", "0",
             "--max-train", "256", "--eval-attacks", "fgsm", "--model-width", "4"]
    assert main(["run", *QUICK, *flags, "--out-dir", str(out)]) == 0
    load = lambda name, key="model": torch.load(out / name, weights_only=True)[key]["1.0.weight"].flatten(1)  # noqa: E731
    snapshot, last, pruned = load("rewind-epoch1.pt"), load("pretrain.pt"), load("pruned.pt", "state")
    assert pruned.shape[0] == 2 < snapshot.shape[0], "half of the first conv's 4 channels were removed"
    for row in pruned:  # no retraining after the rewind: every survivor is an epoch-1 row, not an epoch-2 one
        assert (snapshot == row).all(1).any()
        assert not (last == row).all(1).any()
