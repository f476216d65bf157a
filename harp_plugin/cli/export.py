"""``harp-prune export``: a run's model as ONNX or a ``torch.export`` program, checked on test images."""
from __future__ import annotations

import argparse
from pathlib import Path

from harp_plugin.deploy.export import FORMATS, SUFFIXES, export_model
from harp_plugin.cli.commands import read_run_config
from harp_plugin.pipeline.config import build_config, resolve_device
from harp_plugin.pipeline.run import load_run_model


def add_export_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "export", parents=[common],
        help="export a run's pruned (or dense) model to ONNX or torch.export, checked against PyTorch",
    )
    parser.add_argument("--run-dir", default="runs/latest", help="a folder written by `harp-prune run` (default: runs/latest)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (needs the [export] extra) or torch-export")
    parser.add_argument("--which", choices=("pruned", "dense"), default="pruned", help="which model (default: pruned)")
    parser.add_argument("--out", help="output file (default: RUN_DIR/<which>.onnx or .pt2)")
    parser.add_argument("--sparse", action="store_true", help="ONNX: store mostly-zero weights as sparse initializers")
    parser.add_argument("--device", default="auto", help="where the model runs for the export and the check (auto: cuda when present)")
    parser.set_defaults(handler=export_command)


def export_command(arguments: argparse.Namespace) -> int:
    run_dir = Path(arguments.run_dir)
    config = build_config(read_run_config(run_dir), device=arguments.device, progress=False)
    device = resolve_device(config.device)
    model, test_loader = load_run_model(config, run_dir, arguments.which, device)
    inputs = next(iter(test_loader))[0].to(device)
    out = Path(arguments.out) if arguments.out else run_dir / f"{arguments.which}{SUFFIXES[arguments.format]}"
    result = export_model(model, out, inputs, format=arguments.format, sparse=arguments.sparse)
    print(f"exported the {arguments.which} model to {result.path} ({result.format}, {result.size_bytes / 1e6:.2f} MB)")
    if result.checked_with is None:
        print("not run: onnxruntime is not installed (pip install 'harp-plugin[export]'), so the file is unchecked")
    else:
        print(f"max |{result.checked_with} - PyTorch| = {result.max_abs_error:.2g} on {result.batch} test images")
    return 0
