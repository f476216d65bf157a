"""What each ``harp-prune`` sub-command does, separate from argument parsing."""
from __future__ import annotations

import argparse
from dataclasses import fields

from harp_plugin.pipeline.config import RunConfig, build_config, load_config_file
from harp_plugin.pipeline.run import run
from harp_plugin.registry import KINDS, get_registry
from harp_plugin.reports import comparison_rows, format_text, write_run_report


def run_command(arguments: argparse.Namespace) -> int:
    file_values = load_config_file(arguments.config) if arguments.config else {}
    overrides = {f.name: getattr(arguments, f.name) for f in fields(RunConfig)}
    config = build_config(file_values, **overrides)
    report = run(config)
    written = write_run_report(report, config.out_dir)
    print()
    print(format_text(comparison_rows(report.dense, report.pruned)))
    print()
    print("total wall time: {:.1f} s".format(sum(report.seconds.values())))
    print("wrote: " + ", ".join(str(path) for path in written.values()))
    return 0


def list_command(arguments: argparse.Namespace) -> int:
    registry = get_registry()
    kinds = [arguments.kind] if arguments.kind else list(KINDS)
    for kind in kinds:
        print(f"{kind}: {', '.join(registry.names(kind)) or '(none)'}")
    return 0
