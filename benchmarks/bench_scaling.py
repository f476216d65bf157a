"""Throughput of 1 vs N processes (torch.distributed): a HARP prune epoch and a certified-training epoch.

Each measurement is one ``torchrun --standalone --nproc_per_node N`` job on the same data
(mnist5k, ``--train-size`` training images, global batch ``--batch-size`` split over the
processes, one CPU thread per process): the seconds of one epoch of HARP channel-score
training under PGD-AT and of one epoch of IBP certified training at full ε, timed on rank 0
between barriers. ``--compare 1 2`` runs the process counts alternately ``--repeats`` times
and prints images/s (median) and the ratio to the first count, measured side by side.

    PYTHONPATH=. python benchmarks/bench_scaling.py --compare 1 2 --device cpu
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from harp_plugin.data import load_dataset, make_loaders
from harp_plugin.distributed import is_main, shard_training_loader, torchrun_job, world_size
from harp_plugin.importance.phases import train_masks
from harp_plugin.masking import attach_masks
from harp_plugin.pipeline.config import resolve_device
from harp_plugin.models import small_cnn
from harp_plugin.robust.certified import CertifiedLoss
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.robust.training import TrainConfig, fit
from harp_plugin.schedulers.gamma import IncrementalGamma

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_device_flag, chosen_device, describe  # noqa: E402

EPS = 0.1


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=int, nargs="+", help="process counts to run side by side (the driver)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs per process count")
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (split over the processes)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--attack-steps", type=int, default=3)
    parser.add_argument("--result", type=Path, help="(set by the driver) where rank 0 writes its JSON")
    add_device_flag(parser)
    args = parser.parse_args()
    if args.device != "auto" and "LOCAL_RANK" not in os.environ:
        chosen_device(parser, args.device)
    return args


def timed(step: Callable[[], object]) -> float:
    """Seconds of ``step`` on the slowest rank (barriers on both sides)."""
    if dist.is_initialized():
        dist.barrier()
    start = time.perf_counter()
    step()
    if dist.is_initialized():
        dist.barrier()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> None:
    """One process of one torchrun job: time both epochs, rank 0 writes the figures."""
    torch.set_num_threads(1)
    with torchrun_job(args.device) as joined:
        device = torch.device(resolve_device(joined))
        splits = load_dataset("mnist5k", seed=0, max_train=args.train_size)
        train, val, _ = make_loaders(splits, args.batch_size, seed=0)
        train, val = shard_training_loader(train, 0), DataLoader(Subset(val.dataset, range(64)), batch_size=64)
        torch.manual_seed(0)
        dense = small_cnn(mean=splits.mean, std=splits.std, width=args.width).to(device)
        example = next(iter(val))[0][:1].to(device)
        masked = copy.deepcopy(dense)
        masks = attach_masks(masked, 0.5, mode="channel", method="harp", example_inputs=example)
        harp = timed(lambda: train_masks(
            masked, masks, PGDATLoss(EPS, steps=args.attack_steps), train, val, TrainConfig(epochs=1, lr=0.1),
            gamma=IncrementalGamma(0.01, period=0.1), strict=False))
        certified = timed(lambda: fit(
            copy.deepcopy(dense), CertifiedLoss(EPS, method="ibp", warmup_epochs=0, ramp_epochs=0), train, val,
            TrainConfig(epochs=1, lr=1e-3, optimizer="adam", weight_decay=0.0, grad_clip=8.0), progress=False))
        if is_main():
            images = len(splits.train)
            figures = {"processes": world_size(), "harp": images / harp, "certified": images / certified,
                       "machine": describe(device)}
            args.result.write_text(json.dumps(figures))


def launch(processes: int, args: argparse.Namespace, result: Path) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               __file__, "--result", str(result), "--device", args.device, "--train-size", str(args.train_size),
               "--batch-size", str(args.batch_size), "--width", str(args.width),
               "--attack-steps", str(args.attack_steps)]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def compare(args: argparse.Namespace) -> None:
    runs: dict[int, list[dict]] = {n: [] for n in args.compare}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for processes in args.compare:
                runs[processes].append(launch(processes, args, Path(folder) / f"{processes}-{repeat}.json"))
                print(json.dumps(runs[processes][-1]), flush=True)
    base = args.compare[0]
    print(f"\n{runs[base][0]['machine'].split(',')[0]}; {args.train_size} images, global batch {args.batch_size}, "
          f"{args.repeats} alternated runs, median images/s")
    print("| processes | HARP prune epoch img/s | ratio | certified (IBP) epoch img/s | ratio |")
    print("|---|---|---|---|---|")
    medians = {n: {k: statistics.median(r[k] for r in runs[n]) for k in ("harp", "certified")} for n in args.compare}
    for processes in args.compare:
        row = medians[processes]
        print(f"| {processes} | {row['harp']:.0f} | {row['harp'] / medians[base]['harp']:.2f} | "
              f"{row['certified']:.0f} | {row['certified'] / medians[base]['certified']:.2f} |")


def main() -> None:
    args = parse()
    if args.compare:
        compare(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
