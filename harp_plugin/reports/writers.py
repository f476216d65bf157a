"""Writes a run's report.json, report.md and plot atomically into the run directory."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from harp_plugin.reports.latency import format_latency
from harp_plugin.reports.plot import plot_comparison
from harp_plugin.reports.table import comparison_rows, format_markdown


def write_text_atomic(path: Path, text: str) -> Path:
    """Readers never see a half-written report: write beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


class OutputFolderError(OSError):
    """An output folder that cannot be created or written to."""


def check_writable(folder: Path) -> Path:
    """Fail before any work if ``folder`` cannot take files (read-only, a file, no space left)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as error:
        raise OutputFolderError(
            f"output folder {str(folder)!r} is not writable: {error.strerror or error}"
        ) from error
    return folder


def write_certify_report(result, out_dir: Path, stem: str, subject: str) -> dict[str, Path]:
    """``stem``.json (everything ``result`` measured) and ``stem``.md (the same as a table)."""
    out_dir = Path(out_dir)
    record = result.to_dict()
    written = {"json": write_text_atomic(out_dir / f"{stem}.json", json.dumps(record, indent=2))}
    rows = [
        ("bound method", f"{result.method} ({result.backend} backend)"),
        ("eps (pixel units)", f"{result.eps:g}"),
        ("test images", str(result.total)),
        ("certified accuracy", f"{result.certified_accuracy:.2%}"),
        ("clean accuracy", f"{result.clean_accuracy:.2%}"),
        ("unstable ReLU fraction", f"{result.unstable_fraction:.2%}"),
    ]
    markdown = [f"# harp-prune certify: {subject}", "", "| quantity | value |", "|---|---|"]
    markdown += [f"| {name} | {value} |" for name, value in rows]
    written["markdown"] = write_text_atomic(out_dir / f"{stem}.md", "\n".join(markdown) + "\n")
    return written


def write_run_report(report, out_dir: Path) -> dict[str, Path]:
    """report.json (everything), report.md (the table, each model's epochs, settings), comparison.png."""
    out_dir = Path(out_dir)
    written = {"json": write_text_atomic(out_dir / "report.json", json.dumps(report.to_dict(), indent=2))}
    config = report.config
    markdown = [
        f"# harp-plugin run: {config['method']} pruning of {config['model']} on {config['dataset']}",
        "",
        f"Pruning ratio {config['pruning_ratio']:.0%} of {'channels' if config['mode'] == 'channel' else 'weights'}, eps = {config['eps']}, "
        f"training loss {_training_loss(config)}, seed {config['seed']}, device {report.device}.",
        "",
        format_markdown(comparison_rows(report.columns(), report.epochs), tuple(report.columns())),
        "",
        format_latency(report.latency, report.dense, report.pruned, markdown=True),
        "",
        "Wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()),
    ]
    markdown += [f"\nNote: {note}" for note in report.notes]
    written["markdown"] = write_text_atomic(out_dir / "report.md", "\n".join(markdown) + "\n")
    plot = plot_comparison(report.columns(), out_dir / "comparison.png")
    if plot is not None:
        written["plot"] = plot
    return written


def _training_loss(config: dict) -> str:
    if config.get("train") == "certified":
        return f"certified-{config['certified_method']}"
    return config["train_loss"]
