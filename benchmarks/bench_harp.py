"""HARP vs HYDRA vs LWM (fine-grained) and vs Torch-Pruning's criteria (channels) on mnist5k.

One PGD-AT pre-trained SmallCNN is shared by every method; every method then gets the same
adversarial loss (PGD-AT) and the same prune/fine-tune epochs. Reports mean ± std over seeds
of clean and PGD-20 test accuracy, the learned per-layer kept fractions (plot), and the time
of a HARP prune epoch over a plain PGD-AT epoch on the same model. Sized for a 2-core CPU
(~40 min): a 2,000-image training subset, a 5-step training attack, 3 prune + 2 fine-tune
epochs, γ stepped every optimiser step, PGD-20 on a fixed random 500-image test subset. Every finished
(seed, setting, method) is one JSON line; a rerun skips those, so a crash loses nothing.

    PYTHONPATH=. python benchmarks/bench_harp.py            # everything, then the report
    PYTHONPATH=. python benchmarks/bench_harp.py --report   # tables + plot from the JSONL
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader, Subset

from harp_plugin.data import make_loaders
from harp_plugin.data.bundled import mnist5k
from harp_plugin.importance.channels import prune_channels
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.phases import train_masks
from harp_plugin.importance.taylor import AdversarialTaylorImportance
from harp_plugin.masking import attach_masks, sparsity_report
from harp_plugin.models.small_cnn import small_cnn
from harp_plugin.robust.attacks import pgd
from harp_plugin.robust.evaluation import predict
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig, TrainResult, fit
from harp_plugin.schedulers.gamma import IncrementalGamma

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_device_flag, chosen_device, describe  # noqa: E402

FINE_TARGETS = (0.10, 0.01, 0.005)  # kept fractions: 90%, 99%, 99.5% sparsity
CHANNEL_TARGETS = (0.50, 0.25)  # kept channel fractions: 50% and 75% of channels pruned
FINE_METHODS = ("harp", "hydra", "lwm")
CHANNEL_METHODS = ("harp", "hydra", "lwm", "magnitude", "adv-taylor", "random")
EXAMPLE = torch.zeros(1, 1, 28, 28)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only write the tables and plot")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_harp"))
    parser.add_argument("--results", type=Path, default=Path("docs/results.md"))
    return parse_flags(parser, width=16, width_help="SmallCNN width (the main job's default)", train_steps=5,
                       pretrain_epochs=6, prune_epochs=3, finetune_epochs=2, timing_pairs=3)


def parse_flags(parser: argparse.ArgumentParser, *, width: int, width_help: str, train_steps: int,
                pretrain_epochs: int, prune_epochs: int, finetune_epochs: int, timing_pairs: int,
                prune_help: str | None = None) -> argparse.Namespace:
    """The flags both HARP benchmarks share (their defaults differ), then parse and check ``--device``."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=width, help=width_help)
    parser.add_argument("--train-size", type=int, default=2000, help="training images (of 3,500)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--train-steps", type=int, default=train_steps, help="PGD steps of the training attack")
    parser.add_argument("--pretrain-epochs", type=int, default=pretrain_epochs)
    parser.add_argument("--prune-epochs", type=int, default=prune_epochs, help=prune_help)
    parser.add_argument("--finetune-epochs", type=int, default=finetune_epochs)
    parser.add_argument("--gamma0", type=float, default=0.02)
    parser.add_argument("--gamma-steps", type=int, default=1, help="optimiser steps per gamma step")
    parser.add_argument("--val-samples", type=int, default=256, help="fixed validation subset per epoch")
    parser.add_argument("--eval-samples", type=int, default=500, help="fixed random test subset for PGD-20")
    parser.add_argument("--timing-pairs", type=int, default=timing_pairs)
    parser.add_argument("--threads", type=int, default=1)
    add_device_flag(parser)
    args = parser.parse_args()
    args.device = chosen_device(parser, args.device)
    return args


def loaders(seed: int, args: argparse.Namespace) -> tuple[DataLoader, DataLoader, DataLoader]:
    """One fixed split of mnist5k; the seed changes initialisation noise and batch order.

    Val and test are stored class by class, so their subsets are fixed random draws (the
    same for every seed and method), never the first images.
    """
    torch.manual_seed(seed)
    train, val, test = make_loaders(mnist5k(seed=0, max_train=args.train_size), batch_size=128, seed=seed)
    return train, subset(val, args.val_samples), subset(test, args.eval_samples)


def subset(loader: DataLoader, size: int) -> DataLoader:
    order = torch.randperm(len(loader.dataset), generator=torch.Generator().manual_seed(0))
    return DataLoader(Subset(loader.dataset, order[:size].tolist()), batch_size=loader.batch_size)


def training_loss(args: argparse.Namespace) -> PGDATLoss:
    return PGDATLoss(args.eps, steps=args.train_steps)


def config(epochs: int, lr: float, args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs, lr=lr)


def gamma(args: argparse.Namespace, batches: int) -> IncrementalGamma:
    return IncrementalGamma(args.gamma0, period=args.gamma_steps / batches)


def pretrained(args: argparse.Namespace, build: Callable[[], nn.Module] | None = None, seed: int = 1234,
               tag: str = "") -> nn.Module:
    """The dense PGD-AT model (``build()``, default the SmallCNN), trained once with ``seed`` for
    ``args.pretrain_epochs`` and cached in ``args.out`` as ``pretrained{tag}.pt``, with its test
    accuracy and training time in ``pretrain{tag}.json``."""
    path = args.out / f"pretrained{tag}.pt"
    torch.manual_seed(seed)
    model = (build() if build is not None else small_cnn(num_classes=10, width=args.width)).to(args.device)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location=args.device, weights_only=True))
        return model
    train, val, test = loaders(seed, args)
    start = time.perf_counter()
    fit(model, training_loss(args), train, val, config(args.pretrain_epochs, 0.05, args),
        val_attack=pgd(args.eps, steps=args.train_steps), progress=False, description="pre-train")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    summary = evaluate(model, test, args) | {"seconds": time.perf_counter() - start}
    (args.out / f"pretrain{tag}.json").write_text(json.dumps(summary))
    return model


def evaluate(model: nn.Module, test, args: argparse.Namespace) -> dict[str, float]:
    outcome = predict(model, test, [pgd(args.eps, steps=20)], progress=False)
    return {"clean": outcome.accuracy("clean"), "pgd20": outcome.accuracy("PGD-20")}


def timing(args: argparse.Namespace, base: nn.Module) -> dict:
    """Plain PGD-AT epoch vs HARP prune epoch (99%) on the same model, alternated, same settings."""
    path = args.out / "timing.json"
    if path.exists():
        return json.loads(path.read_text())
    train, val, _ = loaders(0, args)
    loss, attack = training_loss(args), pgd(args.eps, steps=args.train_steps)
    plain, harp = [], []
    for _ in range(args.timing_pairs):
        start = time.perf_counter()
        fit(copy.deepcopy(base), loss, train, val, config(1, 0.01, args), val_attack=attack, progress=False)
        plain.append(time.perf_counter() - start)
        model = copy.deepcopy(base)
        masks = attach_masks(model, 0.01)
        start = time.perf_counter()
        train_masks(model, masks, loss, train, val, config(1, 0.1, args), gamma=gamma(args, len(train)),
                    val_attack=attack, strict=False)
        harp.append(time.perf_counter() - start)
    ratios = [h / p for h, p in zip(harp, plain)]
    summary = {"plain_seconds": plain, "harp_seconds": harp, "ratios": ratios, "median_ratio": statistics.median(ratios),
               "machine": describe(args.device)}
    path.write_text(json.dumps(summary))
    return summary


def first_reached(result: TrainResult | None) -> int | None:
    """The first prune epoch (1-based) whose masks met the target, None if none did."""
    if result is None:
        return None
    return next((r.epoch + 1 for r in result.history if r.selectable), None)


def run_fine(args: argparse.Namespace, base: nn.Module, seed: int, target: float, method: str) -> dict:
    train, val, test = loaders(seed, args)
    model = copy.deepcopy(base)
    attack, loss = pgd(args.eps, steps=args.train_steps), training_loss(args)
    masks = attach_masks(model, target, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = train_masks(model, masks, loss, train, val, config(args.prune_epochs, 0.1, args),
                             gamma=gamma(args, len(train)), val_attack=attack, strict=False)
    reached = masks.target_reached()
    fit(model, loss, train, val, config(args.finetune_epochs, 0.01, args), val_attack=attack, progress=False)
    report = sparsity_report(masks)
    return {
        "part": "fine", "seed": seed, "target": target, "method": method, **evaluate(model, test, args),
        "kept": sum(r.kept_units for r in report) / sum(r.units for r in report),
        "budget": masks.budget_fraction(), "target_reached": reached,
        "reached_epoch": first_reached(pruned) if method == "harp" else None,
        "layers": {r.name: r.kept_fraction for r in report},
    }


def channel_importance(method: str, target: float, args: argparse.Namespace, batches: int) -> tp.importance.Importance:
    if method in ("harp", "hydra", "lwm"):
        return HarpImportance(target, method, gamma=gamma(args, batches))
    if method == "adv-taylor":
        return AdversarialTaylorImportance(batches=4)
    if method == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=1)
    return tp.importance.RandomImportance()


def run_channel(args: argparse.Namespace, base: nn.Module, seed: int, target: float, method: str) -> dict:
    train, val, test = loaders(seed, args)
    model = copy.deepcopy(base)
    importance = channel_importance(method, target, args, len(train))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = prune_channels(
            model, importance, training_loss(args), train, val, target_kept=target, example_inputs=EXAMPLE,
            prune=config(args.prune_epochs, 0.1, args), finetune=config(args.finetune_epochs, 0.01, args),
            classifier=model[-1], val_attack=pgd(args.eps, steps=args.train_steps), strict=False,
        )
    widths = {name: m.weight.shape[0] / base.get_submodule(name).weight.shape[0]
              for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    example = EXAMPLE.to(args.device)
    macs = tp.utils.count_ops_and_params(model, example)[0] / tp.utils.count_ops_and_params(base, example)[0]
    return {
        "part": "channel", "seed": seed, "target": target, "method": method, **evaluate(model, test, args),
        "kept": result.parameters_after / result.parameters_before, "macs": macs,
        "target_reached": result.prune is None or not result.prune.history or result.prune.selected,
        "reached_epoch": first_reached(result.prune) if method == "harp" else None, "layers": widths,
    }


def run_all(args: argparse.Namespace) -> None:
    """Seed by seed, so that an interrupted run still has whole seeds; finished rows are skipped."""
    base = pretrained(args)
    print(json.dumps({"timing": timing(args, base)}), flush=True)
    path = args.out / "rows.jsonl"
    done = {(r["part"], r["seed"], r["target"], r["method"]) for r in read_rows(path)}
    parts = (("fine", run_fine, FINE_TARGETS, FINE_METHODS), ("channel", run_channel, CHANNEL_TARGETS, CHANNEL_METHODS))
    for seed in args.seeds:
        for part, runner, targets, methods in parts:
            for target in targets:
                for method in methods:
                    if (part, seed, target, method) in done:
                        continue
                    start = time.perf_counter()
                    row = runner(args, base, seed, target, method) | {"seconds": time.perf_counter() - start}
                    with path.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    print(json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def table(rows: list[dict], label) -> list[str]:
    lines = ["| setting | method | clean % | PGD-20 % | kept | MACs | target reached | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    keys = sorted({(r["target"], r["method"]) for r in rows}, key=lambda k: (-k[0], k[1]))
    for target, method in keys:
        group = [r for r in rows if (r["target"], r["method"]) == (target, method)]
        macs = f"{statistics.mean(r['macs'] for r in group):.3f}" if "macs" in group[0] else "–"
        lines.append(
            f"| {label(target)} | {method} | {mean_std([r['clean'] for r in group])} | "
            f"{mean_std([r['pgd20'] for r in group])} | {statistics.mean(r['kept'] for r in group):.4f} | {macs} | "
            f"{sum(r['target_reached'] for r in group)}/{len(group)} | {len(group)} |"
        )
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("fine", 0.01), ("fine", 0.005), ("channel", 0.25))
    figure, axes = plt.subplots(1, len(panels), figsize=(14, 3.8))
    for axis, (part, target) in zip(axes, panels):
        harp = [r for r in rows if (r["part"], r["target"], r["method"]) == (part, target, "harp")]
        if not harp:
            continue
        names = list(harp[0]["layers"])
        for row in harp:
            axis.plot(range(len(names)), [row["layers"][n] for n in names], "o-", label=f"HARP seed {row['seed']}")
        axis.axhline(target, color="k", ls="--", label=f"uniform (HYDRA/LWM) {target}")
        axis.set_xticks(range(len(names)), names, rotation=45)
        axis.set_yscale("log")
        unit = "weights" if part == "fine" else "output channels"
        axis.set_title(f"{part}, target {target}: kept {unit} per layer", fontsize=9)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(args: argparse.Namespace) -> None:
    rows = read_rows(args.out / "rows.jsonl")
    fine, channel = [r for r in rows if r["part"] == "fine"], [r for r in rows if r["part"] == "channel"]
    pre, times = (json.loads((args.out / f"{name}.json").read_text()) for name in ("pretrain", "timing"))
    plot(rows, args.results.parent / "harp_kept_fractions.png")
    lines = [
        f"Timing machine: {times.get('machine', 'not recorded (before --device)')}.",
        f"Dense PGD-AT model: clean {100 * pre['clean']:.1f} %, PGD-20 {100 * pre['pgd20']:.1f} %.",
        f"HARP prune epoch / plain PGD-AT epoch (same model, alternated {len(times['ratios'])}×): median "
        f"{times['median_ratio']:.2f} (ratios " + ", ".join(f"{x:.2f}" for x in times["ratios"]) + "; plain "
        + ", ".join(f"{x:.1f}" for x in times["plain_seconds"]) + " s; HARP "
        + ", ".join(f"{x:.1f}" for x in times["harp_seconds"]) + " s).",
        "", "Fine-grained (kept = kept fraction of prunable weights):", "",
        *table(fine, lambda t: f"{100 * (1 - t):g}% sparse"),
        "", "Channel (kept = parameters after / before physical removal; MACs likewise):", "",
        *table(channel, lambda t: f"{100 * (1 - t):g}% channels pruned"),
        "", "![learned per-layer kept fractions](harp_kept_fractions.png)",
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def run_benchmark(args: argparse.Namespace, run_all: Callable[[argparse.Namespace], None],
                  report: Callable[[argparse.Namespace], None]) -> None:
    """One thread, the device line, then the runs (unless ``--report``) and the report."""
    torch.set_num_threads(args.threads)
    print(describe(args.device), flush=True)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")
    if not args.report:
        run_all(args)
    report(args)


def main() -> None:
    run_benchmark(parse(), run_all, report)


if __name__ == "__main__":
    main()
