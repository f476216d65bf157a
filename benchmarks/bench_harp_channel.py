"""HARP channel pruning at high compression on a small ResNet: accuracy, arrival and time.

Per seed, one dense ResNet18 (CIFAR stem, width 8, basic blocks) is PGD-AT trained on 2,000 of
mnist5k's 3,500 training images and shared by every method of that seed. Each FLOPs setting (75 / 90 /
95 % fewer FLOPs) fixes one uniform channel kept fraction a_t, found by bisection so that
Torch-Pruning's uniform pruning keeps at most that share of the FLOPs (Torch-Pruning's own
counter). HARP, HYDRA, magnitude, adversarial Taylor and random then prune to it (HARP to the
same FLOPs, with its own per-group rates); all get the same fine-tune epochs and the same PGD-AT
loss, HARP and HYDRA also their prune epochs (scores and BN trained, weights frozen). A "dense,
same budget" row fine-tunes each seed's dense model for prune + fine-tune epochs. Reported: clean
and PGD-20 accuracy on a fixed 500-image test subset, the FLOPs each pruned network keeps and its
arrival error (kept FLOPs / the setting's uniform FLOPs − 1, plotted per run), and HARP prune
epoch / PGD-AT epoch times measured alternately on the same model (fine-grained and channel
masks; CPU time of the process and wall time). Every finished (seed, setting, method) is one
JSON line; a rerun skips those.

    PYTHONPATH=. python benchmarks/bench_harp_channel.py            # everything, then the report
    PYTHONPATH=. python benchmarks/bench_harp_channel.py --report   # the tables from the JSONL
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

import torch
import torch_pruning as tp
from torch import nn

from bench_harp import (
    channel_importance, evaluate, loaders, mean_std, parse_flags, pretrained, read_rows, run_benchmark,
)
from harp_plugin.importance.channels import prune_channels
from harp_plugin.importance.phases import train_masks
from harp_plugin.masking import attach_masks, conv_linear_flops
from harp_plugin.models.resnet import resnet18
from harp_plugin.robust.attacks import pgd
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig, fit
from harp_plugin.schedulers.gamma import IncrementalGamma

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

FLOPS_TARGETS = (0.25, 0.10, 0.05)  # kept FLOPs shares: 75, 90, 95 % fewer FLOPs
METHODS = ("harp", "hydra", "magnitude", "adv-taylor", "random")
DENSE_SAME_BUDGET = "dense, same budget"
SAMPLE = torch.zeros(1, 1, 28, 28)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only write the tables and the plot")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_harp_channel"))
    parser.add_argument("--plot", type=Path, default=Path("docs/harp_channel_arrival.png"))
    return parse_flags(parser, width=8, width_help="ResNet18 base width", train_steps=2, pretrain_epochs=5,
                       prune_epochs=3, finetune_epochs=3, timing_pairs=2,
                       prune_help="HARP: the last quarter (at least one) under projected rates")


def build(args: argparse.Namespace) -> nn.Module:
    return resnet18(num_classes=10, in_channels=1, width=args.width)


def dense(args: argparse.Namespace, seed: int) -> nn.Module:
    return pretrained(args, lambda: build(args), seed=seed, tag=f"-seed{seed}")


def training_loss(args: argparse.Namespace) -> PGDATLoss:
    return PGDATLoss(args.eps, steps=args.train_steps)


def example(model: nn.Module) -> torch.Tensor:
    return SAMPLE.to(next(model.parameters()).device)


def total_ops(model: nn.Module) -> float:
    return float(tp.utils.count_ops_and_params(model, example(model))[0])


def uniform_flops_share(base: nn.Module, kept: float) -> float:
    """FLOPs share Torch-Pruning's uniform pruning at channel kept fraction ``kept`` leaves."""
    model = copy.deepcopy(base)
    tp.MetaPruner(model, example(model), importance=tp.importance.RandomImportance(), pruning_ratio=1.0 - kept,
                  ignored_layers=[model[-1]]).step()
    return conv_linear_flops(model, example(model)) / conv_linear_flops(base, example(base))


def channel_kept_for(base: nn.Module, target: float) -> float:
    """The largest uniform channel kept fraction whose pruned network keeps at most ``target`` of the FLOPs."""
    low, high = 0.01, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (middle, high) if uniform_flops_share(base, middle) <= target else (low, middle)
    return low


def clocks() -> tuple[float, float]:
    """(wall, CPU time of this process): on a shared CPU the second is what the work cost."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


def timing(args: argparse.Namespace, base: nn.Module) -> dict:
    """PGD-AT epoch vs HARP prune epoch on the same model, alternated: fine-grained and channel."""
    path = args.out / "timing.json"
    if path.exists():
        return json.loads(path.read_text())
    train, val, _ = loaders(0, args)
    loss, attack = training_loss(args), pgd(args.eps, steps=args.train_steps)
    seconds: dict[str, list[tuple[float, float]]] = {"pgd-at": [], "harp unstructured": [], "harp channel": []}
    for _ in range(args.timing_pairs):
        start = clocks()
        fit(copy.deepcopy(base), loss, train, val, TrainConfig(1, lr=0.01), val_attack=attack, progress=False)
        seconds["pgd-at"].append(since(start))
        for mode, target in (("unstructured", 0.01), ("channel", 0.3)):
            model = copy.deepcopy(base)
            masks = attach_masks(model, target, mode=mode, example_inputs=example(model))
            start = clocks()
            train_masks(model, masks, loss, train, val, TrainConfig(1, lr=0.1),
                        gamma=IncrementalGamma(args.gamma0, period=args.gamma_steps / len(train)), val_attack=attack)
            seconds[f"harp {mode}"].append(since(start))
    ratios = {clock: {name: [h[i] / p[i] for h, p in zip(values, seconds["pgd-at"])]
                      for name, values in seconds.items() if name != "pgd-at"}
              for i, clock in enumerate(("wall", "cpu"))}
    summary = {"seconds": seconds, "ratios": ratios, "machine": describe(args.device)}
    path.write_text(json.dumps(summary))
    return summary


def run_one(args: argparse.Namespace, base: nn.Module, seed: int, target: float, kept: float, method: str) -> dict:
    train, val, test = loaders(seed, args)
    model = copy.deepcopy(base)
    importance = channel_importance(method, kept, args, len(train))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prune_channels(
            model, importance, training_loss(args), train, val, target_kept=kept, example_inputs=example(model),
            prune=TrainConfig(args.prune_epochs, lr=0.1), finetune=TrainConfig(args.finetune_epochs, lr=0.01),
            classifier=model[-1], val_attack=pgd(args.eps, steps=args.train_steps), strict=False,
        )
    projection = getattr(importance, "projection", None)
    return {
        "seed": seed, "target": target, "kept_channels": kept, "method": method, **evaluate(model, test, args),
        "flops": conv_linear_flops(model, example(model)) / conv_linear_flops(base, example(base)), "uniform_flops": uniform_flops_share(base, kept),
        "total_ops": total_ops(model) / total_ops(base),
        "projected_error": None if projection is None else projection.arrival_error,
    }


def dense_same_budget(args: argparse.Namespace, base: nn.Module, seed: int) -> dict:
    """The dense model trained on for the pruned runs' prune + fine-tune epochs (fine-tune settings)."""
    train, val, test = loaders(seed, args)
    model = copy.deepcopy(base)
    fit(model, training_loss(args), train, val, TrainConfig(args.prune_epochs + args.finetune_epochs, lr=0.01),
        val_attack=pgd(args.eps, steps=args.train_steps), progress=False)
    return {"seed": seed, "target": 1.0, "method": DENSE_SAME_BUDGET, **evaluate(model, test, args), "flops": 1.0}


def run_all(args: argparse.Namespace) -> None:
    """HARP and HYDRA for every seed first, then the other criteria, then the same-budget dense
    rows: a run cut short by time still has the comparison the benchmark is for. Finished rows
    are skipped."""
    path = args.out / "rows.jsonl"
    bases = {seed: dense(args, seed) for seed in args.seeds[:1]}
    print(json.dumps({"timing": timing(args, bases[args.seeds[0]])}), flush=True)
    kept_path = args.out / "kept.json"  # the architecture's, the same for every seed
    if not kept_path.exists():
        kept_path.write_text(json.dumps({str(t): channel_kept_for(bases[args.seeds[0]], t) for t in FLOPS_TARGETS}))
    kept = {float(k): v for k, v in json.loads(kept_path.read_text()).items()}
    done = {(r["seed"], r["target"], r["method"]) for r in read_rows(path)}
    jobs = [(seed, target, method) for methods in (METHODS[:2], METHODS[2:]) for seed in args.seeds
            for target in FLOPS_TARGETS for method in methods]
    for seed, target, method in jobs + [(seed, 1.0, DENSE_SAME_BUDGET) for seed in args.seeds]:
        if (seed, target, method) in done:
            continue
        base = bases[seed] if seed in bases else bases.setdefault(seed, dense(args, seed))
        start = clocks()
        row = (dense_same_budget(args, base, seed) if method == DENSE_SAME_BUDGET
               else run_one(args, base, seed, target, kept[target], method))
        row |= dict(zip(("seconds", "cpu_seconds"), since(start)))
        with path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def arrival_error(row: dict) -> float:
    return row["flops"] / row["uniform_flops"] - 1


def plot(rows: list[dict], path: Path) -> None:
    """Per run: arrival error (left) and PGD-20 accuracy against the FLOPs kept (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (arrival, accuracy) = plt.subplots(1, 2, figsize=(12, 4))
    for offset, method in enumerate(METHODS):
        group = [r for r in rows if r["method"] == method]
        if not group:
            continue
        positions = [FLOPS_TARGETS.index(r["target"]) + 0.12 * (offset - 2) for r in group]
        arrival.plot(positions, [100 * arrival_error(r) for r in group], "o", label=method)
        accuracy.plot([100 * r["flops"] for r in group], [100 * r["pgd20"] for r in group], "o", label=method)
    arrival.axhspan(-0.5, 0.5, color="0.9", label="±0.5 %")
    arrival.set_xticks(range(len(FLOPS_TARGETS)), [f"{100 * (1 - t):g} % fewer FLOPs" for t in FLOPS_TARGETS])
    arrival.set_ylabel("kept FLOPs / budget − 1 (%)")
    arrival.set_title("arrival, every run", fontsize=9)
    accuracy.set_xscale("log")
    accuracy.set_xlabel("FLOPs kept (% of dense)")
    accuracy.set_ylabel("PGD-20 accuracy (%)")
    accuracy.set_title("PGD-20 vs FLOPs kept, every run", fontsize=9)
    for axis in (arrival, accuracy):
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(args: argparse.Namespace) -> None:
    rows = read_rows(args.out / "rows.jsonl")
    pruned = [r for r in rows if r["method"] != DENSE_SAME_BUDGET]
    times = json.loads((args.out / "timing.json").read_text())
    pre = [json.loads(p.read_text()) for p in sorted(args.out.glob("pretrain-seed*.json"))]
    same = [r for r in rows if r["method"] == DENSE_SAME_BUDGET]
    epochs = (args.pretrain_epochs, args.prune_epochs, args.finetune_epochs)
    lines = [
        f"Timing machine: {times['machine']}.",
        f"Epochs: dense {epochs[0]}; HARP and HYDRA {epochs[0]} + {epochs[1]} prune (scores and BN only) + {epochs[2]} "
        f"fine-tune; magnitude, adv-Taylor and random {epochs[0]} + {epochs[2]} fine-tune; dense, same budget "
        f"{epochs[0]} + {epochs[1] + epochs[2]}.", "",
        "| FLOPs reduction | method | clean % | PGD-20 % | FLOPs kept: target / budget / achieved | "
        "arrival error (max abs) | seeds |", "|---|---|---:|---:|---|---:|---:|",
        f"| 0 % | dense | {mean_std([p['clean'] for p in pre])} | {mean_std([p['pgd20'] for p in pre])} | 1 | – | "
        f"{len(pre)} |",
    ]
    if same:
        lines.append(f"| 0 % | {DENSE_SAME_BUDGET} | {mean_std([r['clean'] for r in same])} | "
                     f"{mean_std([r['pgd20'] for r in same])} | 1 | – | {len(same)} |")
    for target in FLOPS_TARGETS:
        for method in METHODS:
            group = [r for r in pruned if (r["target"], r["method"]) == (target, method)]
            if not group:
                continue
            lines.append(
                f"| {100 * (1 - target):g} % | {method} | {mean_std([r['clean'] for r in group])} | "
                f"{mean_std([r['pgd20'] for r in group])} | {target:g} / {group[0]['uniform_flops']:.4f} / "
                f"{statistics.mean(r['flops'] for r in group):.4f} | "
                f"{100 * max(abs(arrival_error(r)) for r in group):.2f} % | {len(group)} |"
            )
    lines += ["", "Per seed (same dense model), HARP − HYDRA PGD-20 points and HARP's arrival error:", ""]
    for target in FLOPS_TARGETS:
        pairs = {r["seed"]: r for r in pruned if (r["target"], r["method"]) == (target, "harp")}
        gaps = [100 * (pairs[r["seed"]]["pgd20"] - r["pgd20"]) for r in pruned
                if (r["target"], r["method"]) == (target, "hydra") and r["seed"] in pairs]
        if gaps:
            lines.append(f"- {100 * (1 - target):g} %: " + ", ".join(f"{g:+.1f}" for g in gaps)
                         + f" (mean {statistics.mean(gaps):+.1f}); arrival "
                         + ", ".join(f"{100 * arrival_error(r):+.2f} %" for r in pairs.values()))
    lines += ["", "Time per epoch, same model, alternated (ratio to the PGD-AT epoch of the same pair):", ""]
    for index, clock in enumerate(("wall", "cpu")):
        for name, ratios in times["ratios"][clock].items():
            lines.append(
                f"- {name}, {clock} time: ratios " + ", ".join(f"{x:.2f}" for x in ratios)
                + f" (median {statistics.median(ratios):.2f}); seconds "
                + ", ".join(f"{x[index]:.1f}" for x in times["seconds"][name]) + " vs PGD-AT "
                + ", ".join(f"{x[index]:.1f}" for x in times["seconds"]["pgd-at"])
            )
    if pruned:
        plot(pruned, args.plot)
        lines += ["", f"![arrival and PGD-20 per run]({args.plot.name})"]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    run_benchmark(parse(), run_all, report)


if __name__ == "__main__":
    main()
