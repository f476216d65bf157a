"""Pruning for certification: stability (NRS) vs magnitude vs random channel pruning.

An IBP-certified-trained (ε = 0.1) CNN on mnist5k is pruned in geometric rounds to 50% of its
channels with each criterion and the same short certified retraining after every round; per
round: certified accuracy (IBP and CROWN-IBP on the whole test split, full CROWN on its first
``--crown-samples`` images), clean accuracy, and the fraction of unstable ReLUs (IBP bounds).
Every prunable layer loses the same fraction (per-layer ranking), so the criteria differ only
in *which* channels go. Scaled to a 2-core CPU (see --help); results in
docs/results-certified.md.

    python benchmarks/bench_stability.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader, Subset

from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.robust.certified import CertifiedLoss, EpsilonRampHooks
from harp_plugin.certify.rewind import WeightRewinder
from harp_plugin.schedulers.geometric import GeometricScheduler
from harp_plugin.data import DataSplits, load_dataset, make_loaders
from harp_plugin.models import small_cnn
from harp_plugin.robust.training import TrainConfig, fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_device_flag, chosen_device, describe  # noqa: E402

EPS = 0.1


def train_certified(model: nn.Module, splits: DataSplits, epochs: int, warmup: int, ramp: int, seed: int) -> None:
    """IBP certified training (Adam 1e-3, clip 8, batch 128) with the ε ramp; best full-ε epoch kept."""
    train_loader, val_loader, _ = make_loaders(splits, batch_size=128, seed=seed)
    loss = CertifiedLoss(EPS, method="ibp", warmup_epochs=warmup, ramp_epochs=ramp)
    config = TrainConfig(epochs=epochs, lr=1e-3, optimizer="adam", weight_decay=0.0, grad_clip=8.0)
    fit(model, loss, train_loader, val_loader, config, hooks=EpsilonRampHooks(loss), progress=False)


def evaluate(model: nn.Module, loader: DataLoader, crown_loader: DataLoader | None) -> dict:
    ibp, crown_ibp = (certified_accuracy(model, loader, EPS, method=m, backend="native", progress=False)
                      for m in ("ibp", "crown-ibp"))
    crown = None if crown_loader is None else certified_accuracy(
        model, crown_loader, EPS, method="crown", backend="native", progress=False).certified_accuracy
    channels = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    channels += sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear)) - model[-1].out_features
    return {
        "clean": ibp.clean_accuracy, "ibp": ibp.certified_accuracy, "crown_ibp": crown_ibp.certified_accuracy,
        "crown": crown, "unstable": ibp.unstable_fraction, "channels": channels,
    }


def importance_for(name: str, model: nn.Module, calibration: torch.Tensor) -> tp.importance.Importance:
    factories: dict[str, Callable[[], tp.importance.Importance]] = {
        "stability": lambda: StabilityImportance(model, calibration, eps=EPS, mode="nrs"),
        "magnitude": lambda: tp.importance.MagnitudeImportance(p=2),
        "random": lambda: tp.importance.RandomImportance(),
    }
    return factories[name]()


def run_criterion(name: str, dense: nn.Module, rewinder: WeightRewinder, splits: DataSplits, args, seed: int,
                  loaders: tuple[DataLoader, DataLoader]) -> list[dict]:
    model, rewinder = copy.deepcopy((dense, rewinder))
    torch.manual_seed(seed)
    calibration = torch.stack([splits.train[i][0] for i in range(args.calibration)])
    pruner = tp.MetaPruner(
        model, calibration[:1].to(args.device), importance=importance_for(name, model, calibration), pruning_ratio=0.5,
        iterative_steps=args.rounds, iterative_pruning_ratio_scheduler=GeometricScheduler(rate=None),
        ignored_layers=[model[-1]],
    )
    rows = []
    for round_index in range(1, args.rounds + 1):
        rewinder.step(pruner)
        if args.rewind:
            rewinder.rewind()
        epochs = args.epochs if args.rewind else args.retrain
        warmup, ramp = (args.warmup, args.ramp) if args.rewind else (0, 0)
        train_certified(model, splits, epochs, warmup, ramp, seed)
        rows.append({"criterion": name, "round": round_index, **evaluate(model.eval(), *loaders)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=16, help="small_cnn width (default model: 32)")
    parser.add_argument("--epochs", type=int, default=10, help="dense certified-training epochs")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ramp", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="geometric rounds to 50%% of the channels")
    parser.add_argument("--retrain", type=int, default=1, help="full-ε retraining epochs per round")
    parser.add_argument("--rewind", action="store_true", help="rewind to initial weights and retrain from scratch each round")
    parser.add_argument("--calibration", type=int, default=256, help="training images for stability scores")
    parser.add_argument("--crown-samples", type=int, default=0, help="test images for full CROWN (0: skip; it is slow on CPU)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    add_device_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.device = chosen_device(parser, args.device)
    print(describe(args.device), flush=True)
    start = time.time()
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        splits = load_dataset("mnist5k", seed=seed)
        test = DataLoader(splits.test, batch_size=250)
        crown = DataLoader(Subset(splits.test, range(args.crown_samples)), batch_size=50) if args.crown_samples else None
        model = small_cnn(mean=splits.mean, std=splits.std, width=args.width).to(args.device)
        rewinder = WeightRewinder(model)
        train_certified(model, splits, args.epochs, args.warmup, args.ramp, seed)
        dense = {"criterion": "dense", "round": 0, **evaluate(model.eval(), test, crown)}
        rows.append({"seed": seed, **dense})
        for name in ("stability", "magnitude", "random"):
            rows += [{"seed": seed, **row} for row in run_criterion(name, model, rewinder, splits, args, seed, (test, crown))]
        print(f"seed {seed} done after {time.time() - start:.0f}s", flush=True)
    print_table(rows)
    print(f"total {time.time() - start:.0f}s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


def print_table(rows: list[dict]) -> None:
    """Mean ± std over seeds, per criterion and round (percentages)."""
    print("| criterion | round | channels | clean | IBP cert. | CROWN-IBP cert. | CROWN cert. | unstable ReLUs (IBP) |")
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["criterion"], r["round"]) for r in rows}, key=lambda k: (k[1] > 0, k[0], k[1]))
    for criterion, round_index in keys:
        group = [r for r in rows if (r["criterion"], r["round"]) == (criterion, round_index)]
        cells = [_mean_std([100 * r[k] for r in group if r[k] is not None]) for k in ("clean", "ibp", "crown_ibp", "crown", "unstable")]
        print(f"| {criterion} | {round_index} | {group[0]['channels']} | " + " | ".join(cells) + " |")


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


if __name__ == "__main__":
    main()
