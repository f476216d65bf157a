"""Speed, memory and agreement of certification: the built-in engine vs auto_LiRPA, side by side
in one run, on the same batches.

Models: the default CNN (``small_cnn``) and the deeper ``cifar_model_deep`` (28×28 variant),
both IBP-certified-trained briefly on mnist5k (``--train-epochs``; CROWN's cost grows with the
number of unstable ReLUs, and an untrained network at ε = 0.1 is unstable almost everywhere),
and torchvision's ResNet-18 at 32×32 (untrained, BatchNorm statistics from the data; mnist5k
padded to 32×32 and repeated to 3 channels), bounded at a small ε.

For each model and method: seconds and images/s of both engines and their ratio, the IBP cost
in plain forward passes of the same batches, the peak memory, the agreement of the bounds
(IBP: max |difference| / (1 + |bound|); CROWN/CROWN-IBP: margins where the native bound is
looser than auto_LiRPA's by more than 1e-4 relative) and the certified counts. The forward
pass, the native engine and auto_LiRPA run batch by batch in turn (after one warm-up call
each, on two images), so the ratios are measured side by side under the same load; the load average is
printed before and after the table.

    python benchmarks/bench_certify.py --device cpu --resnet-crown-samples 16
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from harp_plugin.bounds import compute_bounds
from harp_plugin.bounds.lirpa import INSTALL_HINT, LirpaBounds, lirpa_available
from harp_plugin.data import load_dataset
from harp_plugin.models import cifar_model_deep, small_cnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stability import EPS, train_certified  # noqa: E402
from machine import add_device_flag, chosen_device, describe  # noqa: E402

Batches = list[tuple[Tensor, Tensor]]
MODELS = ("small_cnn", "deep", "resnet18")


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window: CUDA's allocator peak, or the process's peak RSS (Linux
    resets VmHWM when 5 is written to /proc/self/clear_refs)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # the peak then stays the process's high-water mark


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Seconds, peak MiB and outputs of one engine, accumulated over calls."""

    def __init__(self, run: Callable[[Tensor, Tensor], Optional[Tensor]]) -> None:
        self.run, self.seconds, self.peak, self.outputs = run, 0.0, 0.0, []

    def __call__(self, x: Tensor, y: Tensor, device: torch.device) -> None:
        reset_peak(device)
        synchronise(device)
        start = time.perf_counter()
        out = self.run(x, y)
        synchronise(device)
        self.seconds += time.perf_counter() - start
        self.peak = max(self.peak, peak_mib(device))
        self.outputs.append(out)


def measure_side_by_side(runs: dict[str, Callable], batches: Batches, device: torch.device) -> dict[str, Timer]:
    """Every engine on every batch, interleaved batch by batch (so a change in the machine's load
    hits all of them alike), after one untimed warm-up call each on two images."""
    timers = {name: Timer(run) for name, run in runs.items()}
    with torch.no_grad():
        for run in runs.values():
            run(batches[0][0][:2], batches[0][1][:2])
        for x, y in batches:
            for timer in timers.values():
                timer(x, y, device)
    return timers


def lirpa_runner(model: nn.Module, example: Tensor, eps: float, method: str):
    try:
        bounded = LirpaBounds(model, example)
    except Exception as error:  # auto_LiRPA refuses some models; the table says why
        return None, f"{type(error).__name__}"
    return (lambda x, y: bounded(x, eps, y, method).lower), ""


def relative_difference(ours: Tensor, theirs: Tensor) -> float:
    """max |ours − theirs| / (1 + |theirs|): the agreement the 1e-5 target is stated in."""
    return ((ours - theirs).abs() / (1 + theirs.abs())).max().item()


def compare(name: str, model: nn.Module, batches: Batches, eps: float, methods: list[str], lirpa: bool, device) -> None:
    images = sum(len(y) for _, y in batches)
    for method in methods:
        runs = {
            "forward": lambda x, y: model(x),
            "native": lambda x, y: compute_bounds(model, x, eps, method=method, y=y, intersect=False).lower,
        }
        failure = ""
        if lirpa:
            run, failure = lirpa_runner(model, batches[0][0], eps, method)
            if run is not None:
                runs["lirpa"] = run
        try:
            timers = measure_side_by_side(runs, batches, device)
        except Exception as error:  # auto_LiRPA failing mid-run: measure the rest without it
            if "lirpa" not in runs:
                raise
            failure = type(error).__name__
            del runs["lirpa"]
            timers = measure_side_by_side(runs, batches, device)
        forward, native = timers["forward"], timers["native"]
        ours = torch.cat(native.outputs)
        ours_cert = int((ours > 0).all(1).sum())
        cells = [name, method, str(images), f"{native.seconds:.2f}", f"{images / native.seconds:.1f}", f"{native.peak:.0f}"]
        cells.append(f"{native.seconds / forward.seconds:.2f}" if method == "ibp" else "–")
        theirs_text, ratio, agreement, counts = "absent", "–", "–", f"{ours_cert}"
        if lirpa and "lirpa" not in timers:
            theirs_text = f"fails ({failure})"
        elif lirpa:
            theirs_timer = timers["lirpa"]
            theirs = torch.cat(theirs_timer.outputs)
            theirs_cert = int((theirs > 0).all(1).sum())
            theirs_text = f"{theirs_timer.seconds:.2f} ({theirs_timer.peak:.0f} MiB)"
            ratio = f"{theirs_timer.seconds / native.seconds:.2f}"
            if method == "ibp":
                agreement = f"max rel. diff {relative_difference(ours, theirs):.1e}"
            else:
                looser = (ours < theirs - 1e-4 * (1 + theirs.abs())).sum().item()
                tighter = (ours > theirs + 1e-4 * (1 + theirs.abs())).sum().item()
                agreement = f"looser {looser}, tighter {tighter} of {theirs.numel()}"
            counts = f"{ours_cert} / {theirs_cert}"
        cells += [theirs_text, ratio, agreement, counts]
        print("| " + " | ".join(cells) + " |", flush=True)


def batches_of(dataset, count: int, batch_size: int, device, transform=lambda x: x) -> Batches:
    xs = torch.stack([dataset[i][0] for i in range(count)])
    ys = torch.tensor([int(dataset[i][1]) for i in range(count)])
    return [(transform(xs[i:i + batch_size]).to(device), ys[i:i + batch_size].to(device)) for i in range(0, count, batch_size)]


def to_rgb32(x: Tensor) -> Tensor:
    return F.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="images for IBP and CROWN-IBP")
    parser.add_argument("--crown-samples", type=int, default=100, help="images for full CROWN (0: skip)")
    parser.add_argument("--resnet-samples", type=int, default=None, help="images for ResNet-18 IBP / CROWN-IBP (default: --samples)")
    parser.add_argument("--resnet-crown-samples", type=int, default=0, help="images for ResNet-18 full CROWN (0: skip)")
    parser.add_argument("--resnet-eps", type=float, default=1e-6)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    add_device_flag(parser)
    args = parser.parse_args()
    chosen = args.models.split(",")
    if not set(chosen) <= set(MODELS):
        parser.error(f"--models: unknown {sorted(set(chosen) - set(MODELS))}; choose from {list(MODELS)}")
    torch.set_num_threads(args.threads)
    device = chosen_device(parser, args.device)
    torch.manual_seed(args.seed)
    splits = load_dataset("mnist5k", seed=args.seed)
    pool = torch.utils.data.ConcatDataset([splits.test, splits.val, splits.train])
    lirpa = lirpa_available()
    print(describe(device))
    print(f"auto_LiRPA {'present' if lirpa else 'absent — ' + INSTALL_HINT}")
    print(load_average())
    print("| model | method | images | native s | native img/s | native peak MiB | IBP / forward | "
          "auto_LiRPA s (peak) | ratio LiRPA/native | agreement | certified native / LiRPA |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    models = {
        "small_cnn": lambda: small_cnn(mean=splits.mean, std=splits.std),
        "cifar_model_deep (28x28)": lambda: cifar_model_deep(in_channels=1, input_size=28, mean=splits.mean, std=splits.std),
    }
    for key, (name, build) in zip(("small_cnn", "deep"), models.items()):
        if key not in chosen:
            continue
        model = build()
        train_certified(model, splits, args.train_epochs, warmup=1, ramp=max(args.train_epochs - 2, 1), seed=args.seed)
        model.to(device).eval()
        compare(name, model, batches_of(pool, args.samples, args.batch_size, device), EPS, ["ibp", "crown-ibp"], lirpa, device)
        if args.crown_samples:
            compare(name, model, batches_of(pool, args.crown_samples, args.batch_size, device), EPS, ["crown"], lirpa, device)
    if "resnet18" not in chosen:
        print(load_average())
        return
    resnet = torchvision.models.resnet18(num_classes=10).to(device)
    calibration = batches_of(pool, 256, 64, device, to_rgb32)
    resnet.train()
    with torch.no_grad():
        for x, _ in calibration:
            resnet(x)
    resnet.eval()
    resnet_samples = args.samples if args.resnet_samples is None else args.resnet_samples
    compare("torchvision resnet18 (32x32)", resnet, batches_of(pool, resnet_samples, args.batch_size, device, to_rgb32),
            args.resnet_eps, ["ibp", "crown-ibp"], lirpa, device)
    if args.resnet_crown_samples:
        compare("torchvision resnet18 (32x32)", resnet,
                batches_of(pool, args.resnet_crown_samples, args.resnet_crown_samples, device, to_rgb32),
                args.resnet_eps, ["crown"], lirpa, device)
    print(load_average())


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPU(s)"


if __name__ == "__main__":
    main()
