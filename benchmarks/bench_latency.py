"""Does channel pruning make a model faster? Measured latency speed-up vs the MAC ratio.

The CIFAR ResNet18 (32×32, `--model resnet18`) and the default CNN of `harp-prune run`
(small_cnn, width 16, 28×28) with 50 % and 75 % of their channels removed by
``tp.MetaPruner`` (magnitude importance; latency does not depend on the weights' values, so
the models are untrained). Dense and pruned forward passes are timed side by side, their
runs interleaved (``measure_side_by_side``: median of ``--repeats`` after ``--warmup``), at batch
1 and 256, with 1 and 2 CPU threads (or on the GPU with ``--device cuda``, CUDA events).
The goal it checks: speed-up at batch 256 ≥ 0.8 × MAC ratio.

    python benchmarks/bench_latency.py                 # CPU, 1 and 2 threads
    python benchmarks/bench_latency.py --device cuda   # GPU
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.deploy.latency import measure_side_by_side
from harp_plugin.models import resnet18, small_cnn
from harp_plugin.models.validation import final_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_device_flag, chosen_device, describe  # noqa: E402

GOAL = 0.8  # speed-up at the large batch should reach this share of the MAC ratio


def models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    return {
        "resnet18 (32x32)": (resnet18(num_classes=10), (3, 32, 32)),
        "small_cnn (default CNN, 28x28)": (small_cnn(num_classes=10, width=16), (1, 28, 28)),
    }


def channel_pruned(model: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    pruned = copy.deepcopy(model)
    tp.MetaPruner(pruned, example, importance=tp.importance.GroupMagnitudeImportance(), pruning_ratio=ratio,
                  ignored_layers=[final_classifier(pruned)]).step()
    return pruned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", default="0.5,0.75", help="channel pruning ratios")
    parser.add_argument("--batches", default="1,256", help="batch sizes")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts (ignored on a GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model, batch and setting (median)")
    parser.add_argument("--warmup", type=int, default=2)
    add_device_flag(parser)
    args = parser.parse_args()
    device = chosen_device(parser, args.device)
    ratios = [float(r) for r in args.ratios.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")] if device.type == "cpu" else [None]
    torch.manual_seed(0)
    print(describe(device))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print()
    print("| model | channels removed | MAC ratio | param ratio | threads | batch | dense ms | pruned ms "
          "| speed-up | speed-up / MAC ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (model, shape) in models().items():
        model = model.to(device).eval()
        example = torch.rand(1, *shape, device=device)
        dense_macs, dense_params = tp.utils.count_ops_and_params(model, example)
        pruned = [channel_pruned(model, example, ratio).eval() for ratio in ratios]
        sizes = [tp.utils.count_ops_and_params(p, example) for p in pruned]
        for count in threads:
            for batch in batches:
                inputs = example.expand(batch, *shape).contiguous()
                dense, *variants = measure_side_by_side([model, *pruned], inputs, repeats=args.repeats,
                                                        warmup=args.warmup, threads=count)
                shown_threads = dense.threads if dense.threads is not None else "GPU"
                for ratio, (macs, params), latency in zip(ratios, sizes, variants):
                    mac_ratio, speedup = dense_macs / macs, dense.median_ms / latency.median_ms
                    print(f"| {name} | {ratio:.0%} | {mac_ratio:.2f}x | {dense_params / params:.2f}x | {shown_threads} "
                          f"| {batch} | {dense.median_ms:.2f} | {latency.median_ms:.2f} | {speedup:.2f}x "
                          f"| {speedup / mac_ratio:.2f} |", flush=True)
    print()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"goal: speed-up at batch {max(batches)} >= {GOAL} x MAC ratio (last column >= {GOAL})")


if __name__ == "__main__":
    main()
