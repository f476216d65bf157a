"""Which parts of short certified training matter: the dense pre-training of
``harp-prune run --train certified`` alone, with one setting changed at a time.

Trains the main job's certified model exactly as its pre-training phase does (same loss,
schedule, optimiser, selection on IBP-certified validation accuracy), then certifies the
test split with IBP. Flags are RunConfig fields, so a variant is e.g. ``--certified-init
default`` or ``--certified-regulariser 0``.

    python benchmarks/bench_certified_training.py --seed 0 --certified-regulariser 0
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.cli.flags import add_setting_flags
from harp_plugin.data import make_loaders
from harp_plugin.pipeline.config import build_config
from harp_plugin.data.run_data import load_splits
from harp_plugin.pipeline.run import build_model, certified_loss, prepare_certified
from harp_plugin.robust.certified import EpsilonRampHooks
from harp_plugin.robust.training import TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_flags(parser)
    values = {k: v for k, v in vars(parser.parse_args()).items() if v is not None}
    config = build_config(values, train="certified")
    torch.manual_seed(config.seed)
    splits = load_splits(config)
    train_loader, val_loader, test_loader = make_loaders(splits, config.batch_size, seed=config.seed)
    example = next(iter(val_loader))[0][:2]  # before the model, as run() does: same random draws
    model = build_model(config, splits)
    prepare_certified(model, example, config)
    loss = certified_loss(config, config.pretrain_epochs)
    hooks = EpsilonRampHooks(loss, val_loader)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit(model, loss, train_loader, val_loader,
                 TrainConfig(epochs=config.pretrain_epochs, lr=config.certified_lr, optimizer="adam",
                             weight_decay=0.0, grad_clip=8.0),
                 hooks=hooks, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    test = certified_accuracy(model, test_loader, config.eps, method="ibp", progress=False)
    print(json.dumps({
        "changed": {k: v for k, v in values.items() if k != "train"},
        "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1), "best_epoch": result.best_epoch,
        "test_clean": test.clean_accuracy, "test_ibp_certified": test.certified_accuracy,
        "unstable_fraction": test.unstable_fraction,
        "collapsed": hooks.collapse_message("pre-train"),
    }))


if __name__ == "__main__":
    main()
