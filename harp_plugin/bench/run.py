"""``harp-prune bench``: one dense model, every criterion pruned to each budget, fine-tuned
alike, then evaluated on the test split; resumable at every step.

Layout of the bench folder::

    bench.json                 the settings the results depend on (another set is refused)
    pretrain.pt, dense.pt      dense training checkpoint, then the selected dense model
    dense/result.json          the dense model's evaluation
    <criterion>@<unit>-<keep>/ pruned.pt (after pruning), finetune.pt (every epoch),
                               result.json (when evaluated: the criterion is done)

A finished criterion is never rerun; a half-finished one reloads its pruned model and
resumes fine-tuning from its last epoch checkpoint; a failed one is recorded and retried on
the next run.
"""
from __future__ import annotations

import copy
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from harp_plugin.bench.config import BenchConfig, claim_bench_dir
from harp_plugin.bench.criteria import Budget, Criterion, PruneContext, model_cost, prune_to_budget, registered_criteria
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.data.run_data import RunData, load_run_data
from harp_plugin.deploy import load_pruned, read_pruned, save_pruned
from harp_plugin.deploy.latency import measure_latency
from harp_plugin.grouped import restore_grouped_kernels
from harp_plugin.pipeline.config import RunConfig, resolve_device
from harp_plugin.pipeline.run import build_attack, build_loss, build_model
from harp_plugin.registry import get_registry
from harp_plugin.reports import write_text_atomic
from harp_plugin.robust.attacks import Attack, pgd
from harp_plugin.robust.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from harp_plugin.robust.evaluation import evaluate
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, fit
from harp_plugin.schedulers.gamma import IncrementalGamma


@dataclass
class BenchEntry:
    """One row of the leaderboard: a criterion at a budget (or the dense model), or its failure."""

    criterion: str
    kind: str
    unit: str
    target: float
    kept: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchEntry":
        return cls(**data)


@dataclass
class _Bench:
    """What every criterion of one bench shares."""

    config: BenchConfig
    out_dir: Path
    device: str
    data: RunData
    attacks: list[Attack]
    log: Callable[[str], None]

    def loss(self, training: str) -> TrainingLoss:
        if training == "natural":
            return build_loss("standard")
        return build_loss("pgd-at", eps=self.config.eps, steps=self.config.train_attack_steps)

    def val_attack(self, training: str) -> Attack | None:
        return pgd(self.config.eps, steps=self.config.val_attack_steps) if training == "adversarial" else None

    def train(self, model: nn.Module, training: str, epochs: int, lr: float, checkpoint: Path, label: str) -> None:
        fit(model, self.loss(training), self.data.train_loader, self.data.val_loader, TrainConfig(epochs=epochs, lr=lr),
            val_attack=self.val_attack(training), checkpoint_path=checkpoint, resume=True, device=self.device,
            progress=self.config.progress, description=label)

    def fresh_model(self) -> nn.Module:
        return build_model(self.config, self.data.splits).to(self.device)

    def evaluate(self, model: nn.Module, label: str) -> dict[str, float]:
        """Clean and attacked accuracy, certified accuracies, size and measured latency."""
        report = evaluate(model, self.data.test_loader, self.attacks, self.data.splits.num_classes, self.device,
                          self.config.progress, label)
        metrics = {"clean": report.clean_accuracy, **report.robust_accuracy,
                   "parameters": report.parameters, "macs": report.macs}
        for method in self.config.certify:
            result = certified_accuracy(model, self.data.test_loader, self.config.eps, method=method,
                                        backend=self.config.certify_backend, progress=self.config.progress)
            metrics[f"certified ({method.upper()})"] = result.certified_accuracy
        for batch in (1, self.config.batch_size):
            inputs = self.data.example[:1].expand(batch, *self.data.example.shape[1:]).contiguous()
            metrics[f"latency ms (batch {batch})"] = measure_latency(
                model, inputs, repeats=self.config.latency_repeats).median_ms
        return metrics


def run_bench(config: BenchConfig, log: Callable[[str], None] = print) -> list[BenchEntry]:
    """Run (or resume) the bench of ``config``; returns the dense entry then one per criterion × budget."""
    registry = get_registry()
    criteria = registered_criteria(registry, config.criteria)
    bench = _open(config, log)
    dense = _dense(bench)
    budgets = [Budget(config.unit, keep) for keep in config.keep]
    context = PruneContext(
        example=bench.data.example,
        options={"gamma": IncrementalGamma(RunConfig.gamma0, RunConfig.gamma_period), "calibration": bench.data.train_loader,
                 "eps": config.eps},
        remove_options=dict(
            loss=bench.loss(config.finetune), train_loader=bench.data.train_loader, val_loader=bench.data.val_loader,
            prune=TrainConfig(epochs=config.prune_epochs, lr=config.prune_lr),
            val_attack=bench.val_attack(config.finetune), progress=config.progress, strict=False,
        ),
    )
    entries = [_dense_entry(bench, dense)]
    total = len(criteria) * len(budgets)
    for index, (budget, criterion) in enumerate(((b, c) for b in budgets for c in criteria), start=1):
        prefix = f"[{index}/{total}] {criterion.name} @ {budget.label}"
        entries.append(_criterion(bench, dense, criterion, budget, context, prefix))
    return entries


def _open(config: BenchConfig, log: Callable[[str], None]) -> _Bench:
    out_dir = claim_bench_dir(config)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    data = load_run_data(config, device)
    attacks = [build_attack(name, config.eps, config.eval_attack_steps, data.splits.num_classes)
               for name in config.eval_attacks]
    return _Bench(config, out_dir, device, data, attacks, log)


def _dense(bench: _Bench) -> nn.Module:
    config, path = bench.config, bench.out_dir / "dense.pt"
    model = bench.fresh_model()
    if path.is_file():
        load_model_state(model, load_checkpoint(path, map_location=bench.device)["model"], str(path))
        bench.log(f"dense model: loaded {path}")
        return model
    bench.log(f"dense model: {config.pretrain} training, {config.pretrain_epochs} epochs")
    bench.train(model, config.pretrain, config.pretrain_epochs, config.pretrain_lr, bench.out_dir / "pretrain.pt",
                "pre-train")
    save_checkpoint({"model": model.state_dict()}, path)
    return model


def _dense_entry(bench: _Bench, dense: nn.Module) -> BenchEntry:
    path = bench.out_dir / "dense" / "result.json"
    if path.is_file():
        return BenchEntry.from_dict(json.loads(path.read_text()))
    start = time.perf_counter()
    entry = BenchEntry("dense", "dense", bench.config.unit, 1.0, {"parameters": 1.0, "macs": 1.0},
                       bench.evaluate(dense, "dense"))
    entry.seconds["evaluate"] = time.perf_counter() - start
    write_text_atomic(path, json.dumps(entry.to_dict(), indent=2))
    return entry


def run_folder(out_dir: Path, criterion: Criterion, budget: Budget) -> Path:
    return out_dir / f"{criterion.name}@{budget.unit}-{budget.keep:g}"


def _criterion(
    bench: _Bench, dense: nn.Module, criterion: Criterion, budget: Budget, context: PruneContext, prefix: str,
) -> BenchEntry:
    folder = run_folder(bench.out_dir, criterion, budget)
    result_path = folder / "result.json"
    if result_path.is_file():
        bench.log(f"{prefix}: done earlier, not rerun")
        return BenchEntry.from_dict(json.loads(result_path.read_text()))
    entry = BenchEntry(criterion.name, criterion.kind, budget.unit, budget.keep)
    try:
        model = _pruned(bench, dense, criterion, budget, context, folder, entry, prefix)
        config = bench.config
        bench.log(f"{prefix}: {config.finetune} fine-tuning, {config.finetune_epochs} epochs")
        start = time.perf_counter()
        bench.train(model, config.finetune, config.finetune_epochs, config.finetune_lr, folder / "finetune.pt",
                    f"{criterion.name} fine-tune")
        entry.seconds["finetune"] = time.perf_counter() - start
        start = time.perf_counter()
        entry.metrics = bench.evaluate(model, criterion.name)
        entry.seconds["evaluate"] = time.perf_counter() - start
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # one criterion failing must not stop the others
        entry.error = f"{type(error).__name__}: {error}"
        bench.log(f"{prefix}: FAILED ({entry.error}); retried on the next run")
        write_text_atomic(folder / "error.txt", traceback.format_exc())
        return entry
    write_text_atomic(result_path, json.dumps(entry.to_dict(), indent=2))
    summary = ", ".join(f"{k} {v:.1%}" for k, v in entry.metrics.items() if k != "clean" and _is_accuracy(k))
    bench.log(f"{prefix}: clean {entry.metrics['clean']:.1%}" + (f", {summary}" if summary else ""))
    return entry


def _pruned(
    bench: _Bench, dense: nn.Module, criterion: Criterion, budget: Budget, context: PruneContext, folder: Path,
    entry: BenchEntry, prefix: str,
) -> nn.Module:
    """The pruned model: reloaded if pruning finished before, else pruned now and saved."""
    path = folder / "pruned.pt"
    if path.is_file():
        model = bench.fresh_model()
        record = read_pruned(path, map_location=bench.device)
        restore_grouped_kernels(model, record.state)  # layers a transform replaced, then channels removed
        load_pruned(model, path)
        entry.kept = dict(record.metadata["kept"])
        bench.log(f"{prefix}: pruned earlier; resuming")
        return model
    bench.log(f"{prefix}: pruning")
    start = time.perf_counter()
    model = copy.deepcopy(dense)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(bench.config.seed)
        prune_to_budget(get_registry(), criterion, model, budget, context)
    entry.seconds["prune"] = time.perf_counter() - start
    before, after = model_cost(dense, bench.data.example), model_cost(model, bench.data.example)
    entry.kept = {unit: after[unit] / before[unit] for unit in before}
    save_pruned(model, path, metadata={"kept": entry.kept})
    return model


def _is_accuracy(metric: str) -> bool:
    return not (metric in ("parameters", "macs") or metric.startswith("latency"))
