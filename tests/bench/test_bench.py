"""`harp-prune bench` end to end on a reduced budget: every step, an interruption, a resume."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
import torch_pruning as tp

from harp_plugin.bench import BenchConfig, BenchConfigError, run_bench, write_leaderboard
from harp_plugin.bench import run as bench_run
from harp_plugin.bench.leaderboard import speedup_points
from harp_plugin.cli.main import main
from harp_plugin.registry import get_registry, hookimpl
from harp_plugin.robust import training

torch.set_num_threads(1)


class ThirdParty:
    """A plugin as an installed package would register it through its entry point."""

    @hookimpl
    def harp_importances(self) -> dict:
        return {"toy-l1": partial(tp.importance.GroupMagnitudeImportance, p=1)}


@pytest.fixture
def third_party():
    registry = get_registry()
    plugin = ThirdParty()
    registry.register(plugin, name="toy-plugin")
    yield
    registry.unregister(plugin)


def _config(out_dir: Path, **changes) -> BenchConfig:
    settings = dict(
        dataset="digits", max_train=96, max_eval=24, model_width=8, batch_size=32, eps=0.05,
        criteria=("magnitude", "grouped-kernel", "toy-l1"), unit="macs", keep=(0.5,), pretrain_epochs=1,
        finetune_epochs=2, eval_attacks=("pgd",), eval_attack_steps=2, certify=("ibp", "crown-ibp"),
        latency_repeats=2, out_dir=str(out_dir), progress=False,
    )
    settings.update(changes)
    return BenchConfig(**settings)


class Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.slow
def test_bench_runs_is_interrupted_and_resumes_without_redoing_work(tmp_path, monkeypatch, third_party) -> None:
    config = _config(tmp_path / "bench")
    prunes: list[str] = []
    real_prune = bench_run.prune_to_budget
    monkeypatch.setattr(bench_run, "prune_to_budget",
                        lambda registry, criterion, *a: prunes.append(criterion.name) or real_prune(registry, criterion, *a))
    batches: list[int] = []
    real_loss = bench_run._Bench.loss
    monkeypatch.setattr(bench_run._Bench, "loss", lambda self, training_kind: _counting(real_loss(self, training_kind), batches))
    # Interrupt the grouped-kernel fine-tuning right after its first epoch checkpoint.
    real_save = training.save_checkpoint

    def save_then_interrupt(payload, path):
        written = real_save(payload, path)
        if "grouped-kernel" in str(path) and Path(path).name == "finetune.pt":
            raise Interrupt()
        return written

    monkeypatch.setattr(training, "save_checkpoint", save_then_interrupt)
    with pytest.raises(Interrupt):
        run_bench(config, log=lambda line: None)
    assert prunes == ["magnitude", "grouped-kernel"]
    assert (tmp_path / "bench" / "magnitude@macs-0.5" / "result.json").is_file()
    assert not (tmp_path / "bench" / "grouped-kernel@macs-0.5" / "result.json").exists()
    per_epoch = len(batches) // (1 + 2 + 1)  # pre-train 1 epoch, magnitude 2, grouped-kernel 1
    assert len(batches) == 4 * per_epoch

    monkeypatch.setattr(training, "save_checkpoint", real_save)
    prunes.clear()
    batches.clear()
    lines: list[str] = []
    entries = run_bench(config, log=lines.append)
    # magnitude is not rerun; grouped-kernel reloads its pruned model and trains only epoch 2;
    # the third-party criterion runs in full (2 epochs); the dense model is not retrained.
    assert prunes == ["toy-l1"]
    assert len(batches) == 3 * per_epoch
    assert any("magnitude @ 50% macs: done earlier" in line for line in lines)
    assert any("grouped-kernel @ 50% macs: pruned earlier; resuming" in line for line in lines)

    by_name = {e.criterion: e for e in entries}
    assert set(by_name) == {"dense", "magnitude", "grouped-kernel", "toy-l1"}
    for name in ("magnitude", "grouped-kernel", "toy-l1"):
        entry = by_name[name]
        assert entry.error is None, entry.error
        assert entry.kept["macs"] <= 0.5 and entry.kept["macs"] > 0.4  # the budget, met closely
        assert {"clean", "PGD-2", "certified (IBP)", "certified (CROWN-IBP)", "latency ms (batch 1)",
                "latency ms (batch 32)"} <= set(entry.metrics)
        assert entry.metrics["macs"] < by_name["dense"].metrics["macs"]
    written = write_leaderboard(entries, config, tmp_path / "bench")
    markdown = written["markdown"].read_text()
    assert "| grouped-kernel | 50% macs |" in markdown and "| dense | dense |" in markdown
    rows = written["csv"].read_text().splitlines()
    assert rows[0].startswith("criterion,kind,unit,target") and len(rows) == 5
    assert len(json.loads(written["json"].read_text())["entries"]) == 4
    assert written["plot"].stat().st_size > 0
    assert written["speedup plot"].name == "speedup_vs_mac_ratio.png" and written["speedup plot"].stat().st_size > 0


def _counting(loss, calls: list[int]):
    def counted(model, inputs, labels):
        calls.append(len(labels))
        return loss(model, inputs, labels)

    return counted


def test_a_bench_folder_of_other_settings_is_refused(tmp_path) -> None:
    from harp_plugin.bench.config import claim_bench_dir

    claim_bench_dir(_config(tmp_path))
    claim_bench_dir(_config(tmp_path, criteria=("magnitude",), progress=True))  # results unaffected: accepted
    with pytest.raises(BenchConfigError, match=r"eps = 0.05 there, 0.1 now; finetune_epochs = 2 there, 3 now"):
        claim_bench_dir(_config(tmp_path, eps=0.1, finetune_epochs=3))


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["bench", "--criteria", "nope", "--out-dir", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "unknown criterion 'nope'; registered:" in error and "grouped-kernel" in error and "smoothness" in error
    assert len(error.strip().splitlines()) == 1
    assert main(["bench", "--keep", "1.5", "--out-dir", str(out)]) == 2
    assert "keep must list kept fractions in (0, 1)" in capsys.readouterr().err


def test_a_budget_that_cannot_be_met_names_the_blocking_layer() -> None:
    from harp_plugin.bench.criteria import Budget, uniform_ratio
    from harp_plugin.models import small_cnn

    model = small_cnn(num_classes=10, input_size=8, width=4)
    with pytest.raises(ValueError, match=r"budget 1% parameters cannot be met by channel pruning \(classifier '8' kept whole\)"):
        uniform_ratio(model, Budget("parameters", 0.01), torch.rand(2, 1, 8, 8))
    ratio = uniform_ratio(model, Budget("macs", 0.5), torch.rand(2, 1, 8, 8))
    assert 0.2 < ratio < 0.5


def test_speedup_points_divide_dense_by_pruned_for_macs_and_latency() -> None:
    """Hand-made rows: dense 400 MACs at 8 ms; a criterion at 100 MACs and 4 ms is 4x cheaper and
    2x faster; failed rows and rows without the metric are left out."""
    dense = bench_run.BenchEntry("dense", "dense", "macs", 1.0, metrics={"macs": 400, "latency ms (batch 1)": 8.0})
    half = bench_run.BenchEntry("l1", "importance", "macs", 0.25, metrics={"macs": 100, "latency ms (batch 1)": 4.0})
    quarter = bench_run.BenchEntry("l1", "importance", "macs", 0.5, metrics={"macs": 200, "latency ms (batch 1)": 2.0})
    failed = bench_run.BenchEntry("fpgm", "importance", "macs", 0.25, error="boom")
    untimed = bench_run.BenchEntry("lamp", "importance", "macs", 0.25, metrics={"macs": 100})
    points = speedup_points([dense, half, quarter, failed, untimed], "latency ms (batch 1)")
    assert points == {"l1": [(4.0, 2.0), (2.0, 4.0)]}
    assert speedup_points([half], "latency ms (batch 1)") == {}, "no dense row, nothing to divide by"
