"""``harp-prune``: the command-line entry point."""
from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from typing import Any, Sequence

from harp_plugin import __version__
from harp_plugin.bounds.backends import BACKENDS
from harp_plugin.cli import commands
from harp_plugin.cli.bench import add_bench_parser
from harp_plugin.cli.flags import add_setting_flags, choices_help, registry_name, setting_type
from harp_plugin.cli.export import add_export_parser
from harp_plugin.importance.errors import NotFittedError, TargetNotReachedError
from harp_plugin.registry import KINDS, get_registry

USER_ERRORS = (
    ValueError, TypeError, KeyError, OSError, ImportError, NotFittedError, TargetNotReachedError,
)


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the flag and the problem, not the whole usage block.
    Flags are never abbreviated: an abbreviation would change meaning when a flag is added."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse, but an unknown flag names the closest flag of its sub-command."""
        arguments, extras = self.parse_known_args(args, namespace)
        if extras:
            subcommands = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            chosen = subcommands.get(getattr(arguments, "command", None), self)
            chosen.error(f"unrecognized arguments: {' '.join(extras)}{chosen.closest_flag(extras)}")
        return arguments

    def closest_flag(self, extras: list[str]) -> str:
        """``"; did you mean --eps?"`` for the first unknown ``--flag``, or ``""``."""
        flags = [option for action in self._actions for option in action.option_strings]
        unknown = next((extra.split("=")[0] for extra in extras if extra.startswith("--")), None)
        close = difflib.get_close_matches(unknown, flags, n=1, cutoff=0.6) if unknown else []
        return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="harp-prune",
        description="Robust pruning for Torch-Pruning: prune, robustly fine-tune, evaluate, certify.",
    )
    parser.add_argument("--version", action="version", version=f"harp-prune {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the full traceback on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="pre-train → prune → fine-tune → evaluate (defaults: mnist5k, small CNN)")
    run.add_argument("--config", metavar="FILE", help="YAML or TOML file of settings; flags override it")
    add_setting_flags(run)
    run.set_defaults(handler=commands.run_command)

    certify = sub.add_parser("certify", parents=[common], help="certified accuracy of a run's dense or pruned model on its test split")
    certify.add_argument("--run-dir", default="runs/latest", metavar="DIR",
                         help="a folder written by `harp-prune run`; default: runs/latest")
    certify.add_argument("--which", choices=("pruned", "dense"), default="pruned",
                         help="which of the run's checkpoints to certify; default: pruned")
    certify.add_argument("--eps", type=setting_type("eps"), metavar="X",
                         help="L-inf radius in pixel units, in [0, 1]; default: the run's eps")
    certify.add_argument("--method", default="crown", type=registry_name("certifiers"), metavar="NAME",
                         help=choices_help("bound method (alpha-crown needs auto_LiRPA)", get_registry().names("certifiers"), "crown"))
    certify.add_argument("--backend", default="auto", choices=BACKENDS,
                         help="bound engine: auto (auto_LiRPA when importable), native or auto_lirpa; default: auto")
    certify.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present); default: auto")
    certify.add_argument("--out", metavar="DIR",
                         help="folder for certify-WHICH-METHOD.json and .md; default: the run folder")
    certify.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    certify.set_defaults(handler=commands.certify_command)

    add_export_parser(sub, common)
    add_bench_parser(sub, parents=[common])

    listing = sub.add_parser("list", parents=[common], help="list registered components with a one-line description")
    listing.add_argument("kind", nargs="?", choices=KINDS, help="only this kind; default: every kind")
    listing.set_defaults(handler=commands.list_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; errors are one line on stderr (``--debug``: the traceback)."""
    try:
        arguments = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, usage errors: argparse has printed them
        return stop.code if isinstance(stop.code, int) else 0
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            return arguments.handler(arguments)
        except KeyboardInterrupt:
            print("harp-prune: interrupted; rerun with --resume to continue from the last epoch", file=sys.stderr)
            return 130
        except Exception as error:
            if arguments.debug:
                raise
            print(f"harp-prune: error: {describe_error(error)}", file=sys.stderr)
            return 2 if isinstance(error, USER_ERRORS) else 1


def describe_error(error: BaseException) -> str:
    """One line saying what went wrong; an unexpected error also says how to see more."""
    if isinstance(error, OSError) and error.strerror:
        message = f"{error.strerror}: {error.filename!r}" if error.filename else error.strerror
    elif isinstance(error, KeyError) and error.args and type(error) is KeyError:
        message = f"missing key {error.args[0]!r}"
    else:
        message = str(error) or type(error).__name__
    message = " ".join(message.split())
    if not isinstance(error, USER_ERRORS):
        message = f"unexpected {type(error).__name__}: {message} (rerun with --debug for the traceback)"
    return message


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    print(f"harp-prune: warning: {' '.join(str(message).split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
