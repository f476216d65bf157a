"""Speed of certification: built-in engine vs auto_LiRPA (when installed), same run, same data.

Certified accuracy of mnist5k images at ε = 0.1 on the default CNN (small_cnn) and on
cifar_model_deep (28×28 variant), with IBP, CROWN-IBP and CROWN. Models are IBP-certified
trained briefly first (``--train-epochs``), because CROWN's cost grows with the number of
unstable ReLUs and an untrained network at ε = 0.1 is unstable almost everywhere.

    python benchmarks/bench_certify.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.bounds.lirpa import INSTALL_HINT, lirpa_available
from harp_plugin.data import load_dataset
from harp_plugin.models import cifar_model_deep, small_cnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stability import EPS, train_certified  # noqa: E402
from machine import add_device_flag, chosen_device, describe  # noqa: E402


def timed(model: nn.Module, loader: DataLoader, method: str, backend: str) -> tuple[float, float]:
    """(seconds, certified accuracy) of one certification pass."""
    start = time.perf_counter()
    result = certified_accuracy(model, loader, EPS, method=method, backend=backend, progress=False)
    return time.perf_counter() - start, result.certified_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="images for IBP and CROWN-IBP")
    parser.add_argument("--crown-samples", type=int, default=20, help="images for full CROWN (0: skip)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--train-epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    add_device_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = chosen_device(parser, args.device)
    torch.manual_seed(args.seed)
    splits = load_dataset("mnist5k", seed=args.seed)
    pool = torch.utils.data.ConcatDataset([splits.test, splits.val, splits.train])
    loaders = {
        method: DataLoader(Subset(pool, range(count)), batch_size=args.batch_size)
        for method, count in (("ibp", args.samples), ("crown-ibp", args.samples), ("crown", args.crown_samples))
        if count > 0
    }
    models = {
        "small_cnn": small_cnn(mean=splits.mean, std=splits.std),
        "cifar_model_deep (28x28)": cifar_model_deep(in_channels=1, input_size=28, mean=splits.mean, std=splits.std),
    }
    models = {name: model.to(device) for name, model in models.items()}
    lirpa = lirpa_available()
    print(describe(device))
    print(f"torch threads: {torch.get_num_threads()}; auto_LiRPA: {'present' if lirpa else 'absent — ' + INSTALL_HINT}")
    print("| model | method | images | native s | native img/s | native cert. | auto_LiRPA s | ratio (LiRPA/native) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model in models.items():
        train_certified(model, splits, args.train_epochs, warmup=1, ramp=max(args.train_epochs - 2, 1), seed=args.seed)
        model.eval()
        for method, loader in loaders.items():
            images = len(loader.dataset)
            seconds, cert = timed(model, loader, method, "native")
            other = "absent"
            ratio = "–"
            if lirpa:
                lirpa_seconds, lirpa_cert = timed(model, loader, method, "auto_lirpa")
                other, ratio = f"{lirpa_seconds:.1f} (cert. {100 * lirpa_cert:.1f}%)", f"{lirpa_seconds / seconds:.2f}"
            print(f"| {name} | {method} | {images} | {seconds:.1f} | {images / seconds:.1f} | {100 * cert:.1f}% | {other} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
