"""HARP channel pruning at high compression on a small ResNet: accuracy, arrival and time.

One PGD-AT pre-trained ResNet18 (CIFAR stem, width 8) on mnist5k is shared by every method.
Each FLOPs setting (75 / 90 / 95 % fewer FLOPs) fixes one uniform channel kept fraction a_t,
found by bisection so that Torch-Pruning's uniform pruning keeps that share of the FLOPs
(Torch-Pruning's own counter). HARP, HYDRA, magnitude, adversarial Taylor and random then
prune to it (HARP to the same FLOPs, with its own per-group rates) and get the same prune
and fine-tune epochs and the same PGD-AT loss. Reported: clean and PGD-20 test accuracy, the
FLOPs each pruned network keeps and its arrival error (kept FLOPs / the setting's uniform
FLOPs − 1), and HARP prune epoch / PGD-AT epoch times measured alternately on the same model
(fine-grained and channel masks). Every finished (seed, setting, method) is one JSON line; a
rerun skips those.

    PYTHONPATH=. python benchmarks/bench_harp_channel.py            # everything, then the report
    PYTHONPATH=. python benchmarks/bench_harp_channel.py --report   # the tables from the JSONL
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

from bench_harp import channel_importance, evaluate, loaders, mean_std, read_rows
from harp_plugin.importance.channels import prune_channels
from harp_plugin.importance.phases import train_masks
from harp_plugin.masking import attach_masks
from harp_plugin.models.resnet import resnet18
from harp_plugin.robust.attacks import pgd
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig, fit
from harp_plugin.schedulers.gamma import IncrementalGamma

FLOPS_TARGETS = (0.25, 0.10, 0.05)  # kept FLOPs shares: 75, 90, 95 % fewer FLOPs
METHODS = ("harp", "hydra", "magnitude", "adv-taylor", "random")
EXAMPLE = torch.zeros(1, 1, 28, 28)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only write the tables")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_harp_channel"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=8, help="ResNet18 base width")
    parser.add_argument("--train-size", type=int, default=1000, help="training images (of 3,500)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--train-steps", type=int, default=3, help="PGD steps of the training attack")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--prune-epochs", type=int, default=4, help="HARP: the last quarter under projected rates")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--gamma0", type=float, default=0.02)
    parser.add_argument("--gamma-steps", type=int, default=1, help="optimiser steps per gamma step")
    parser.add_argument("--val-samples", type=int, default=256)
    parser.add_argument("--eval-samples", type=int, default=500, help="fixed random test subset for PGD-20")
    parser.add_argument("--timing-pairs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def build(args: argparse.Namespace) -> nn.Module:
    return resnet18(num_classes=10, in_channels=1, width=args.width)


def training_loss(args: argparse.Namespace) -> PGDATLoss:
    return PGDATLoss(args.eps, steps=args.train_steps)


def pretrained(args: argparse.Namespace) -> nn.Module:
    """The shared dense PGD-AT model, trained once and cached with its test accuracy."""
    path = args.out / "pretrained.pt"
    torch.manual_seed(1234)
    model = build(args)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model
    train, val, test = loaders(1234, args)
    start = time.perf_counter()
    fit(model, training_loss(args), train, val, TrainConfig(args.pretrain_epochs, lr=0.05),
        val_attack=pgd(args.eps, steps=args.train_steps), progress=False, description="pre-train")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    summary = evaluate(model, test, args) | {"seconds": time.perf_counter() - start}
    (args.out / "pretrain.json").write_text(json.dumps(summary))
    return model


def flops(model: nn.Module) -> float:
    """Conv/Linear FLOPs by Torch-Pruning's own layer-wise counter (what HARP's budget counts;
    the counter's total also has BatchNorm, ReLU and pooling)."""
    per_layer = tp.utils.count_ops_and_params(model, EXAMPLE, layer_wise=True)[2]
    return float(sum(v for m, v in per_layer.items() if isinstance(m, (nn.Conv2d, nn.Linear)) and v))


def total_ops(model: nn.Module) -> float:
    return float(tp.utils.count_ops_and_params(model, EXAMPLE)[0])


def uniform_flops_share(base: nn.Module, kept: float) -> float:
    """FLOPs share Torch-Pruning's uniform pruning at channel kept fraction ``kept`` leaves."""
    model = copy.deepcopy(base)
    tp.MetaPruner(model, EXAMPLE, importance=tp.importance.RandomImportance(), pruning_ratio=1.0 - kept,
                  ignored_layers=[model[-1]]).step()
    return flops(model) / flops(base)


def channel_kept_for(base: nn.Module, target: float) -> float:
    """The uniform channel kept fraction whose pruned network keeps ``target`` of the FLOPs."""
    low, high = 0.01, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (middle, high) if uniform_flops_share(base, middle) <= target else (low, middle)
    return low


def timing(args: argparse.Namespace, base: nn.Module) -> dict:
    """PGD-AT epoch vs HARP prune epoch on the same model, alternated: fine-grained and channel."""
    path = args.out / "timing.json"
    if path.exists():
        return json.loads(path.read_text())
    train, val, _ = loaders(0, args)
    loss, attack = training_loss(args), pgd(args.eps, steps=args.train_steps)
    seconds: dict[str, list[float]] = {"pgd-at": [], "harp unstructured": [], "harp channel": []}
    for _ in range(args.timing_pairs):
        start = time.perf_counter()
        fit(copy.deepcopy(base), loss, train, val, TrainConfig(1, lr=0.01), val_attack=attack, progress=False)
        seconds["pgd-at"].append(time.perf_counter() - start)
        for mode, target in (("unstructured", 0.01), ("channel", 0.3)):
            model = copy.deepcopy(base)
            masks = attach_masks(model, target, mode=mode, example_inputs=EXAMPLE)
            start = time.perf_counter()
            train_masks(model, masks, loss, train, val, TrainConfig(1, lr=0.1),
                        gamma=IncrementalGamma(args.gamma0, period=args.gamma_steps / len(train)), val_attack=attack)
            seconds[f"harp {mode}"].append(time.perf_counter() - start)
    summary = {"seconds": seconds, "ratios": {
        name: [h / p for h, p in zip(values, seconds["pgd-at"])] for name, values in seconds.items() if name != "pgd-at"
    }}
    path.write_text(json.dumps(summary))
    return summary


def run_one(args: argparse.Namespace, base: nn.Module, seed: int, target: float, kept: float, method: str) -> dict:
    train, val, test = loaders(seed, args)
    model = copy.deepcopy(base)
    importance = channel_importance(method, kept, args, len(train))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prune_channels(
            model, importance, training_loss(args), train, val, target_kept=kept, example_inputs=EXAMPLE,
            prune=TrainConfig(args.prune_epochs, lr=0.1), finetune=TrainConfig(args.finetune_epochs, lr=0.01),
            classifier=model[-1], val_attack=pgd(args.eps, steps=args.train_steps),
        )
    share = flops(model) / flops(base)
    projection = getattr(importance, "projection", None)
    return {
        "seed": seed, "target": target, "kept_channels": kept, "method": method, **evaluate(model, test, args),
        "flops": share, "uniform_flops": uniform_flops_share(base, kept),
        "total_ops": total_ops(model) / total_ops(base),
        "projected_error": None if projection is None else projection.arrival_error,
    }


def run_all(args: argparse.Namespace) -> None:
    base = pretrained(args)
    print(json.dumps({"timing": timing(args, base)}), flush=True)
    kept_path = args.out / "kept.json"
    if not kept_path.exists():
        kept_path.write_text(json.dumps({str(t): channel_kept_for(base, t) for t in FLOPS_TARGETS}))
    kept = {float(k): v for k, v in json.loads(kept_path.read_text()).items()}
    path = args.out / "rows.jsonl"
    done = {(r["seed"], r["target"], r["method"]) for r in read_rows(path)}
    for seed in args.seeds:
        for target in FLOPS_TARGETS:
            for method in METHODS:
                if (seed, target, method) in done:
                    continue
                start = time.perf_counter()
                row = run_one(args, base, seed, target, kept[target], method) | {"seconds": time.perf_counter() - start}
                with path.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def report(args: argparse.Namespace) -> None:
    rows = read_rows(args.out / "rows.jsonl")
    pre, times = (json.loads((args.out / f"{name}.json").read_text()) for name in ("pretrain", "timing"))
    lines = [
        f"Dense PGD-AT ResNet18 (width {args.width}): clean {100 * pre['clean']:.1f} %, PGD-20 {100 * pre['pgd20']:.1f} %.",
        "", "| FLOPs reduction | channels kept (uniform) | method | clean % | PGD-20 % | FLOPs kept | "
        "arrival error (max abs) | seeds |", "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for target in FLOPS_TARGETS:
        for method in METHODS:
            group = [r for r in rows if (r["target"], r["method"]) == (target, method)]
            if not group:
                continue
            errors = [r["flops"] / r["uniform_flops"] - 1 for r in group]
            lines.append(
                f"| {100 * (1 - target):g} % | {group[0]['kept_channels']:.3f} | {method} | "
                f"{mean_std([r['clean'] for r in group])} | {mean_std([r['pgd20'] for r in group])} | "
                f"{statistics.mean(r['flops'] for r in group):.4f} | {100 * max(map(abs, errors)):.2f} % | {len(group)} |"
            )
    lines += ["", "Time per epoch, same model, alternated (seconds; ratio to the PGD-AT epoch of the same pair):", ""]
    for name, ratios in times["ratios"].items():
        lines.append(f"- {name}: ratios " + ", ".join(f"{x:.2f}" for x in ratios) + f" (median {statistics.median(ratios):.2f}); "
                     + "seconds " + ", ".join(f"{x:.1f}" for x in times["seconds"][name]) + " vs PGD-AT "
                     + ", ".join(f"{x:.1f}" for x in times["seconds"]["pgd-at"]))
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")
    if not args.report:
        run_all(args)
    report(args)


if __name__ == "__main__":
    main()
