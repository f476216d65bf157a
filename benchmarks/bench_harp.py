"""HARP vs HYDRA vs LWM (fine-grained) and vs Torch-Pruning's criteria (channels) on mnist5k.

One PGD-AT pre-trained default CNN (SmallCNN) is shared by every method; every method then
gets the same adversarial loss (PGD-AT) and the same prune/fine-tune epochs. Reports mean ±
std over seeds of clean and PGD-20 test accuracy, the learned per-layer kept fractions, and
the time of a HARP prune epoch over a plain PGD-AT epoch on the same model. CPU-sized: few
epochs, a 5-step training attack, one thread; see docs/results.md for the exact command.

    PYTHONPATH=. python benchmarks/bench_harp.py --part pretrain
    PYTHONPATH=. python benchmarks/bench_harp.py --part fine      # runs/bench_harp/fine.jsonl
    PYTHONPATH=. python benchmarks/bench_harp.py --part channel   # runs/bench_harp/channel.jsonl
    PYTHONPATH=. python benchmarks/bench_harp.py --part report    # tables + plot
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
from harp_plugin.robust.training import TrainConfig, fit
from harp_plugin.schedulers.gamma import IncrementalGamma

FINE_TARGETS = (0.10, 0.01, 0.005)  # kept fractions: 90%, 99%, 99.5% sparsity
CHANNEL_TARGETS = (0.50, 0.25)  # kept channel fractions: 50% and 75% of channels pruned
FINE_METHODS = ("harp", "hydra", "lwm")
CHANNEL_METHODS = ("harp", "hydra", "lwm", "magnitude", "adv-taylor", "random")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("pretrain", "fine", "channel", "report"), required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_harp"))
    parser.add_argument("--results", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--train-steps", type=int, default=5, help="PGD steps of the training attack")
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--prune-epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--gamma0", type=float, default=0.01)
    parser.add_argument("--gamma-period", type=float, default=0.1, help="epochs per gamma step")
    parser.add_argument("--eval-samples", type=int, default=750)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def loaders(seed: int):
    """One fixed split of mnist5k; the seed changes initialisation noise and batch order."""
    torch.manual_seed(seed)
    return make_loaders(mnist5k(seed=0), batch_size=128, seed=seed)


def training_loss(args: argparse.Namespace) -> PGDATLoss:
    return PGDATLoss(args.eps, steps=args.train_steps)


def pretrained(args: argparse.Namespace) -> nn.Module:
    """The shared dense PGD-AT model, trained once and cached with its test accuracy."""
    path = args.out / "pretrained.pt"
    torch.manual_seed(1234)
    model = small_cnn(num_classes=10)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model
    train, val, test = loaders(1234)
    fit(model, training_loss(args), train, val, TrainConfig(args.pretrain_epochs, lr=0.05),
        val_attack=pgd(args.eps, steps=args.train_steps), progress=False, description="pre-train")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    (args.out / "pretrain.json").write_text(json.dumps(evaluate(model, test, args)))
    return model


def evaluate(model: nn.Module, test, args: argparse.Namespace) -> dict[str, float]:
    outcome = predict(model, test, [pgd(args.eps, steps=20)], max_batches=-(-args.eval_samples // test.batch_size),
                      progress=False)
    return {"clean": outcome.accuracy("clean"), "pgd20": outcome.accuracy("PGD-20")}


def timed(function, *a, **kw):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = function(*a, **kw)
    unreached = any("never reached" in str(w.message) for w in caught)
    return value, time.perf_counter() - start, unreached


def run_fine(args: argparse.Namespace, base: nn.Module, seed: int, target: float, method: str) -> dict:
    train, val, test = loaders(seed)
    model = copy.deepcopy(base)
    attack, loss = pgd(args.eps, steps=args.train_steps), training_loss(args)
    baseline = None
    if method == "harp" and seed == args.seeds[0]:  # a plain PGD-AT epoch on the same model, same load
        _, baseline, _ = timed(fit, copy.deepcopy(base), loss, train, val, TrainConfig(1, lr=0.01),
                               val_attack=attack, progress=False)
    masks = attach_masks(model, target, method=method)
    _, seconds, unreached = timed(
        train_masks, model, masks, loss, train, val, TrainConfig(args.prune_epochs, lr=0.1),
        gamma=IncrementalGamma(args.gamma0, args.gamma_period), val_attack=attack, strict=False,
    )
    fit(model, loss, train, val, TrainConfig(args.finetune_epochs, lr=0.01), val_attack=attack, progress=False)
    report = sparsity_report(masks)
    return {
        "part": "fine", "seed": seed, "target": target, "method": method, **evaluate(model, test, args),
        "kept": sum(r.kept_units for r in report) / sum(r.units for r in report),
        "target_reached": not unreached, "layers": {r.name: r.kept_fraction for r in report},
        "prune_epoch_seconds": seconds / args.prune_epochs if method != "lwm" else None,
        "pgd_at_epoch_seconds": baseline,
    }


def channel_importance(method: str, target: float, args: argparse.Namespace) -> tp.importance.Importance:
    if method in ("harp", "hydra", "lwm"):
        return HarpImportance(target, method, gamma=IncrementalGamma(args.gamma0, args.gamma_period))
    if method == "adv-taylor":
        return AdversarialTaylorImportance(batches=4)
    if method == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=1)
    return tp.importance.RandomImportance()


def run_channel(args: argparse.Namespace, base: nn.Module, seed: int, target: float, method: str) -> dict:
    train, val, test = loaders(seed)
    model = copy.deepcopy(base)
    importance = channel_importance(method, target, args)
    attack = pgd(args.eps, steps=args.train_steps)
    result, _, unreached = timed(
        prune_channels, model, importance, training_loss(args), train, val, target_kept=target,
        example_inputs=torch.zeros(1, 1, 28, 28), prune=TrainConfig(args.prune_epochs, lr=0.1),
        finetune=TrainConfig(args.finetune_epochs, lr=0.01), classifier=model[-1], val_attack=attack, strict=False,
    )
    widths = {name: m.weight.shape[0] / base.get_submodule(name).weight.shape[0]
              for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    return {
        "part": "channel", "seed": seed, "target": target, "method": method, **evaluate(model, test, args),
        "kept": result.parameters_after / result.parameters_before, "target_reached": not unreached,
        "layers": widths,
    }


def run_part(args: argparse.Namespace) -> None:
    base = pretrained(args)
    if args.part == "pretrain":
        return
    runner, targets, methods = (
        (run_fine, FINE_TARGETS, FINE_METHODS) if args.part == "fine" else (run_channel, CHANNEL_TARGETS, CHANNEL_METHODS)
    )
    path = args.out / f"{args.part}.jsonl"
    done = {(r["seed"], r["target"], r["method"]) for r in read_rows(path)}
    for seed in args.seeds:
        for target in targets:
            for method in methods:
                if (seed, target, method) in done:
                    continue
                row = runner(args, base, seed, target, method)
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
    lines = ["| setting | method | clean % | PGD-20 % | kept | target reached | seeds |", "|---|---|---:|---:|---:|---:|---:|"]
    keys = sorted({(r["target"], r["method"]) for r in rows}, key=lambda k: (-k[0], k[1]))
    for target, method in keys:
        group = [r for r in rows if (r["target"], r["method"]) == (target, method)]
        reached = sum(r["target_reached"] for r in group)
        lines.append(
            f"| {label(target)} | {method} | {mean_std([r['clean'] for r in group])} | "
            f"{mean_std([r['pgd20'] for r in group])} | {statistics.mean(r['kept'] for r in group):.4f} | "
            f"{reached}/{len(group)} | {len(group)} |"
        )
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, (part, target) in zip(axes, (("fine", 0.01), ("channel", 0.25))):
        harp = [r for r in rows if (r["part"], r["target"], r["method"]) == (part, target, "harp")]
        if not harp:
            continue
        names = list(harp[0]["layers"])
        for row in harp:
            axis.plot(range(len(names)), [row["layers"][n] for n in names], "o-", label=f"HARP seed {row['seed']}")
        axis.axhline(target, color="k", ls="--", label=f"uniform (HYDRA/LWM) {target}")
        axis.set_xticks(range(len(names)), names, rotation=45)
        axis.set_yscale("log")
        axis.set_title(f"{part}: learned kept fraction per layer (target {target})")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(args: argparse.Namespace) -> None:
    fine, channel = read_rows(args.out / "fine.jsonl"), read_rows(args.out / "channel.jsonl")
    pre = json.loads((args.out / "pretrain.json").read_text())
    paired = [r for r in fine if r["method"] == "harp" and r.get("pgd_at_epoch_seconds")]
    ratios = [r["prune_epoch_seconds"] / r["pgd_at_epoch_seconds"] for r in paired]
    plot(fine + channel, args.results.parent / "harp_kept_fractions.png")
    lines = [
        f"Dense PGD-AT model: clean {100 * pre['clean']:.1f} %, PGD-20 {100 * pre['pgd20']:.1f} %.",
        "HARP prune epoch / plain PGD-AT epoch on the same model, timed back to back: "
        + ", ".join(f"{r['target']}: {x:.2f}" for r, x in zip(paired, ratios))
        + " (per target kept fraction; both epochs include their validation pass).",
        "", "Fine-grained (kept = kept fraction of prunable weights):", "",
        *table(fine, lambda t: f"{100 * (1 - t):g}% sparse"),
        "", "Channel (kept = parameters after / before physical removal):", "",
        *table(channel, lambda t: f"{100 * (1 - t):g}% channels pruned"),
        "", "![learned per-layer kept fractions](harp_kept_fractions.png)",
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")
    if args.part == "report":
        report(args)
    else:
        run_part(args)


if __name__ == "__main__":
    main()
