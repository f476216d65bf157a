"""What each ``harp-prune`` sub-command does, separate from argument parsing."""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.distributed import is_main, torchrun_job
from harp_plugin.pipeline.config import RunConfig, build_config, load_config_file, resolve_device
from harp_plugin.pipeline.run import load_run_model, run
from harp_plugin.registry import KINDS, get_registry
from harp_plugin.reports import check_writable, comparison_rows, format_latency, format_text, write_certify_report, write_run_report


def run_command(arguments: argparse.Namespace) -> int:
    file_values = load_config_file(arguments.config) if arguments.config else {}
    overrides = {f.name: getattr(arguments, f.name) for f in fields(RunConfig)}
    config = build_config(file_values, **overrides)
    with torchrun_job(config.device) as device:
        speaks = is_main()  # asked inside: the process group is gone after the block
        report = run(config.replace(device=device), log=print if speaks else _silent)
    if not speaks:
        return 0
    written = write_run_report(report, config.out_dir)
    print()
    print(format_text(comparison_rows(report.columns(), report.epochs), tuple(report.columns())))
    print()
    if report.latency:
        print(format_latency(report.latency, report.dense, report.pruned))
        print()
    print("total wall time: {:.1f} s".format(sum(report.seconds.values())))
    print("wrote: " + ", ".join(str(path) for path in written.values()))
    return 0


def _silent(_: str) -> None:
    """Ranks other than 0 print nothing (rank 0 speaks for the job)."""


def certify_command(arguments: argparse.Namespace) -> int:
    run_dir = Path(arguments.run_dir)
    config = build_config(read_run_config(run_dir), device=arguments.device)
    eps = config.eps if arguments.eps is None else arguments.eps
    out_dir = Path(arguments.out) if arguments.out else run_dir
    check_writable(out_dir)
    model, test_loader = load_run_model(config, run_dir, arguments.which, resolve_device(config.device))
    result = certified_accuracy(
        model, test_loader, eps, method=arguments.method, backend=arguments.backend, progress=arguments.progress,
    )
    written = write_certify_report(result, out_dir, f"certify-{arguments.which}-{arguments.method}",
                                   f"{arguments.which} model of {run_dir}")
    print(f"{arguments.which} model, {result.method} ({result.backend} backend), eps = {eps:g}, {result.total} test images")
    print(f"certified accuracy {result.certified_accuracy:.2%}, clean accuracy {result.clean_accuracy:.2%}, "
          f"unstable ReLUs {result.unstable_fraction:.2%}")
    print("wrote: " + ", ".join(str(path) for path in written.values()))
    return 0


def read_run_config(run_dir: Path) -> dict:
    """The settings a `harp-prune run` stored in ``run_dir/report.json``."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{str(report_path)!r} does not exist: point --run-dir at a `harp-prune run` output folder")
    try:
        settings = json.loads(report_path.read_text())["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(report_path)!r} is not a harp-prune run report (no readable 'config')") from error
    if not isinstance(settings, dict):
        raise ValueError(f"{str(report_path)!r} is not a harp-prune run report ('config' is not a mapping)")
    return settings


def list_command(arguments: argparse.Namespace) -> int:
    registry = get_registry()
    for kind in [arguments.kind] if arguments.kind else list(KINDS):
        names = registry.names(kind)
        print(f"{kind}:")
        width = max((len(name) for name in names), default=0)
        for name in names:
            owner = registry.owner(kind, name)
            source = "" if owner.startswith("harp_plugin.") else f"  [plugin {owner}]"
            print(f"  {name:<{width}}  {registry.description(kind, name) or '(no description)'}{source}")
        if not names:
            print("  (none)")
    return 0
