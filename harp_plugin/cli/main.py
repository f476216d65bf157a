"""``harp-prune``: the command-line entry point."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Sequence

from harp_plugin.cli import commands
from harp_plugin.importance.errors import NotFittedError, TargetNotReachedError
from harp_plugin.pipeline.config import RunConfig

USER_ERRORS = (
    ValueError, TypeError, KeyError, FileNotFoundError, ImportError, NotFittedError, TargetNotReachedError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harp-prune",
        description="Robust pruning for Torch-Pruning: prune, robustly fine-tune, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="pre-train → prune → fine-tune → evaluate (defaults: mnist5k, small CNN)")
    run.add_argument("--config", help="YAML or TOML file of settings (flags override it)")
    add_config_flags(run)
    run.set_defaults(handler=commands.run_command)

    certify = sub.add_parser("certify", help="certified accuracy of a run's dense or pruned model on its test split")
    certify.add_argument("--run-dir", default="runs/latest", help="a folder written by `harp-prune run` (default: runs/latest)")
    certify.add_argument("--which", choices=("pruned", "dense"), default="pruned", help="which checkpoint (default: pruned)")
    certify.add_argument("--eps", type=float, help="L∞ radius in pixel units (default: the run's eps)")
    certify.add_argument("--method", default="crown", help="ibp, crown, crown-ibp (alpha-crown with auto_LiRPA)")
    certify.add_argument("--backend", default="auto", help="auto (auto_LiRPA when importable), native or auto_lirpa")
    certify.add_argument("--device", default="auto", help="auto picks cuda when present")
    certify.add_argument("--no-progress", dest="progress", action="store_false")
    certify.set_defaults(handler=commands.certify_command)

    listing = sub.add_parser("list", help="list registered components (all kinds, or one)")
    listing.add_argument("kind", nargs="?", help="importances, attacks, losses, certifiers, schedulers, datasets or models")
    listing.set_defaults(handler=commands.list_command)
    return parser


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field; values are converted (and checked) by build_config."""
    for field in fields(RunConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.default is True or field.default is False:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            shown = ",".join(field.default) if isinstance(field.default, tuple) else field.default
            parser.add_argument(flag, dest=field.name, default=None, metavar="VALUE", help=f"default: {shown}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"harp-prune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harp-prune: interrupted; rerun with --resume to continue from the last epoch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
