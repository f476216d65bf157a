"""``harp-prune bench``: the sub-command's flags and what it does (self-contained)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from harp_plugin.bench import BenchConfig, format_text, run_bench, write_leaderboard
from harp_plugin.bench.config import TRAININGS, UNITS

_DEFAULTS = BenchConfig()


def add_bench_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", parents=parents, help="every structured criterion pruned to the same budgets, fine-tuned alike, attacked and certified",
        description="Prune one trained model with every registered criterion (or --criteria) to each budget, "
                    "fine-tune each the same way, evaluate, and write a leaderboard. Rerunning with the same "
                    "settings resumes: finished criteria are kept, interrupted ones continue from their last "
                    "checkpoint.",
    )
    add = bench.add_argument
    add("--dataset", default=_DEFAULTS.dataset, help="a registered dataset (default: %(default)s)")
    add("--data-dir", help="where datasets are stored")
    add("--download", action="store_true", help="download the dataset if missing")
    add("--max-train", type=int, help="cap on training samples")
    add("--max-eval", type=int, help="cap on validation and test samples")
    add("--model", default=_DEFAULTS.model, help="a registered model (default: %(default)s)")
    add("--model-width", type=int, default=_DEFAULTS.model_width, help="base width (default: %(default)s)")
    add("--seed", type=int, default=_DEFAULTS.seed, help="seed of data order, training and pruning (default: %(default)s)")
    add("--device", default=_DEFAULTS.device, help="auto picks cuda when present")
    add("--batch-size", type=int, default=_DEFAULTS.batch_size, help="training and evaluation batch size (default: %(default)s)")
    add("--eps", type=float, default=_DEFAULTS.eps, help="L∞ radius in pixel units (default: %(default)s)")
    add("--criteria", type=_names, default=(), help="comma-separated criteria (default: every registered one)")
    add("--unit", choices=UNITS, default=_DEFAULTS.unit, help="what the budget counts (default: %(default)s)")
    add("--keep", type=_fractions, default=_DEFAULTS.keep, help="kept fractions, comma-separated (default: 0.5,0.25)")
    add("--pretrain", choices=TRAININGS, default=_DEFAULTS.pretrain, help="dense training (default: %(default)s)")
    add("--pretrain-epochs", type=int, default=_DEFAULTS.pretrain_epochs, help="epochs of dense training (default: %(default)s)")
    add("--pretrain-lr", type=float, default=_DEFAULTS.pretrain_lr, help="SGD learning rate of dense training (default: %(default)s)")
    add("--finetune", choices=TRAININGS, default=_DEFAULTS.finetune,
        help="fine-tuning of every pruned model (default: %(default)s)")
    add("--finetune-epochs", type=int, default=_DEFAULTS.finetune_epochs, help="fine-tuning epochs, the same for every criterion (default: %(default)s)")
    add("--finetune-lr", type=float, default=_DEFAULTS.finetune_lr, help="SGD learning rate of fine-tuning (default: %(default)s)")
    add("--prune-epochs", type=int, default=_DEFAULTS.prune_epochs, help="score training of learned criteria (HARP, HYDRA)")
    add("--prune-lr", type=float, default=_DEFAULTS.prune_lr, help="learning rate of HARP/HYDRA score training (default: %(default)s)")
    add("--train-attack-steps", type=int, default=_DEFAULTS.train_attack_steps, help="PGD steps of adversarial training (default: %(default)s)")
    add("--val-attack-steps", type=int, default=_DEFAULTS.val_attack_steps, help="PGD steps of adversarial validation (default: %(default)s)")
    add("--eval-attacks", type=_names, default=_DEFAULTS.eval_attacks, help="registered attacks (default: pgd,autoattack)")
    add("--eval-attack-steps", type=int, default=_DEFAULTS.eval_attack_steps, help="steps of evaluation attacks that take them (default: %(default)s)")
    add("--certify", type=_names, default=_DEFAULTS.certify, help="bound methods, '' for none (default: ibp,crown-ibp)")
    add("--certify-backend", default=_DEFAULTS.certify_backend,
        help="native (default: bounds every model the plugin builds, grouped kernels included), auto or auto_lirpa")
    add("--latency-repeats", type=int, default=_DEFAULTS.latency_repeats, help="timed forward passes per latency figure (default: %(default)s)")
    add("--out-dir", default=_DEFAULTS.out_dir, help="the bench folder (default: %(default)s)")
    add("--no-progress", dest="progress", action="store_false", help="no progress bars")
    bench.set_defaults(handler=bench_command)


def bench_command(arguments: argparse.Namespace) -> int:
    config = BenchConfig(**{f.name: getattr(arguments, f.name) for f in dataclasses.fields(BenchConfig)})
    try:
        entries = run_bench(config)
    except KeyboardInterrupt:
        print(f"harp-prune bench: interrupted; rerun the same command to resume {config.out_dir!r}", file=sys.stderr)
        return 130
    written = write_leaderboard(entries, config, config.out_dir)
    print()
    print(format_text(entries))
    print("wrote: " + ", ".join(str(path) for path in written.values()))
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in _names(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.25, got {text!r}") from error
