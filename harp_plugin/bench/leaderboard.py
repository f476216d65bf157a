"""The bench's leaderboard: terminal text, Markdown, CSV, JSON, accuracy-vs-budget plots and the
measured speed-up against the MAC ratio (fewer MACs do not always mean a faster model)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from harp_plugin.bench.config import BenchConfig
from harp_plugin.bench.run import BenchEntry
from harp_plugin.reports import write_text_atomic

_SIZE_METRICS = ("parameters", "macs")


def accuracy_metrics(entries: Sequence[BenchEntry]) -> list[str]:
    """Accuracy columns in first-seen order: clean, each attack, each certified accuracy."""
    names: list[str] = []
    for entry in entries:
        for name in entry.metrics:
            if name not in names and name not in _SIZE_METRICS and not name.startswith("latency"):
                names.append(name)
    return names


def latency_metrics(entries: Sequence[BenchEntry]) -> list[str]:
    names: list[str] = []
    for entry in entries:
        names += [n for n in entry.metrics if n.startswith("latency") and n not in names]
    return names


def ranked(entries: Sequence[BenchEntry]) -> list[BenchEntry]:
    """Dense first, then by budget (largest kept first) and, within one, by the last attack's
    accuracy (the strongest attack when listed weakest first), then clean accuracy."""
    metrics = accuracy_metrics(entries)
    robust = [m for m in metrics if m != "clean" and not m.startswith("certified")]
    key_metric = robust[-1] if robust else "clean"

    def key(entry: BenchEntry) -> tuple:
        failed = entry.error is not None
        return (entry.kind != "dense", -entry.target, failed, -entry.metrics.get(key_metric, -1.0),
                -entry.metrics.get("clean", -1.0), entry.criterion)

    return sorted(entries, key=key)


def table_rows(entries: Sequence[BenchEntry]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows, in leaderboard order."""
    accuracies, latencies = accuracy_metrics(entries), latency_metrics(entries)
    header = ["criterion", "budget", "params kept", "MACs kept", *accuracies, *latencies]
    rows = []
    for entry in ranked(entries):
        budget = "dense" if entry.kind == "dense" else f"{entry.target:.0%} {entry.unit}"
        if entry.error is not None:
            rows.append([entry.criterion, budget] + ["failed"] * (len(header) - 2))
            continue
        rows.append([
            entry.criterion, budget, _pct(entry.kept.get("parameters")), _pct(entry.kept.get("macs")),
            *(_pct(entry.metrics.get(m)) for m in accuracies),
            *(_number(entry.metrics.get(m)) for m in latencies),
        ])
    return header, rows


def failures(entries: Sequence[BenchEntry]) -> list[str]:
    """One line per failed criterion: what failed and why (retried on the next run)."""
    return [f"{e.criterion} @ {e.target:.0%} {e.unit} failed: {e.error}" for e in ranked(entries) if e.error]


def format_text(entries: Sequence[BenchEntry]) -> str:
    header, rows = table_rows(entries)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:], *failures(entries)])


def format_markdown(entries: Sequence[BenchEntry]) -> str:
    header, rows = table_rows(entries)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [f"\n- {line}" for line in failures(entries)]
    return "\n".join(lines)


def format_csv(entries: Sequence[BenchEntry]) -> str:
    """Raw numbers (fractions, milliseconds), one row per entry, in leaderboard order."""
    accuracies, latencies = accuracy_metrics(entries), latency_metrics(entries)
    columns = ["criterion", "kind", "unit", "target", "kept_parameters", "kept_macs", *accuracies,
               "parameters", "macs", *latencies, "error"]
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    for entry in ranked(entries):
        writer.writerow([
            entry.criterion, entry.kind, entry.unit, entry.target, entry.kept.get("parameters", ""),
            entry.kept.get("macs", ""), *(entry.metrics.get(m, "") for m in accuracies),
            entry.metrics.get("parameters", ""), entry.metrics.get("macs", ""),
            *(entry.metrics.get(m, "") for m in latencies), entry.error or "",
        ])
    return stream.getvalue()


def write_leaderboard(entries: Sequence[BenchEntry], config: BenchConfig, out_dir: Path) -> dict[str, Path]:
    """leaderboard.md / .csv / .json and accuracy_vs_budget.png (when matplotlib is installed)."""
    out_dir = Path(out_dir)
    title = (f"# harp-prune bench: {config.model} on {config.dataset}, {config.finetune} fine-tuning "
             f"({config.finetune_epochs} epochs each), eps = {config.eps}")
    written = {
        "markdown": write_text_atomic(out_dir / "leaderboard.md", f"{title}\n\n{format_markdown(entries)}\n"),
        "csv": write_text_atomic(out_dir / "leaderboard.csv", format_csv(entries)),
        "json": write_text_atomic(out_dir / "leaderboard.json", json.dumps(
            {"config": config.to_dict(), "entries": [e.to_dict() for e in ranked(entries)]}, indent=2)),
    }
    for key, plotted in (("plot", plot_accuracy_vs_budget(entries, out_dir / "accuracy_vs_budget.png")),
                         ("speedup plot", plot_speedup_vs_mac_ratio(entries, out_dir / "speedup_vs_mac_ratio.png"))):
        if plotted is not None:
            written[key] = plotted
    return written


def speedup_points(entries: Sequence[BenchEntry], metric: str) -> dict[str, list[tuple[float, float]]]:
    """Per criterion, (dense MACs / its MACs, dense latency / its latency) at one latency metric."""
    dense = next((e for e in entries if e.kind == "dense" and metric in e.metrics and "macs" in e.metrics), None)
    if dense is None:
        return {}
    points: dict[str, list[tuple[float, float]]] = {}
    for entry in entries:
        if entry.kind != "dense" and entry.error is None and metric in entry.metrics and entry.metrics.get("macs"):
            points.setdefault(entry.criterion, []).append(
                (dense.metrics["macs"] / entry.metrics["macs"], dense.metrics[metric] / entry.metrics[metric]))
    return points


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _finish(plt, figure, axes, path: Path, legend_width: float) -> Path:
    """One legend for all panels on the right, then written beside the target and renamed: an
    interrupted bench leaves no half-written PNG."""
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize="small")
    figure.tight_layout(rect=(0, 0, 1 - legend_width, 1))
    partial = path.with_name(f".{path.name}.partial.png")
    figure.savefig(partial, dpi=110)
    plt.close(figure)
    partial.replace(path)
    return path


def plot_speedup_vs_mac_ratio(entries: Sequence[BenchEntry], path: Path) -> Path | None:
    """One panel per latency batch size: measured speed-up over the dense model against its MAC
    ratio, one marker series per criterion; the diagonal is 'as fast as the MACs promise'."""
    plt = _pyplot()
    metrics = [m for m in latency_metrics(entries) if speedup_points(entries, m)]
    if plt is None or not metrics:
        return None
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        points = speedup_points(entries, metric)
        for index, (criterion, pairs) in enumerate(points.items()):
            axis.plot(*zip(*sorted(pairs)), marker="os^D"[index // 10 % 4], linestyle="", label=criterion)
        largest = max(max(max(pair) for pair in pairs) for pairs in points.values())
        axis.plot([1, largest], [1, largest], color="black", linestyle="--", linewidth=0.8, label="speed-up = MAC ratio")
        axis.set_title(metric)
        axis.set_xlabel("MAC ratio (dense / pruned)")
        axis.set_ylabel("measured speed-up (dense / pruned)")
    return _finish(plt, figure, axes, path, legend_width=0.2)


def plot_accuracy_vs_budget(entries: Sequence[BenchEntry], path: Path) -> Path | None:
    """One panel per accuracy metric, one line per criterion over the kept budget."""
    plt = _pyplot()
    if plt is None:
        return None
    metrics = accuracy_metrics(entries)
    done = [e for e in entries if e.error is None and e.kind != "dense"]
    if not metrics or not done:
        return None
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    unit = done[0].unit
    for axis, metric in zip(axes[0], metrics):
        for index, criterion in enumerate(dict.fromkeys(e.criterion for e in done)):
            points = sorted((e.target, e.metrics[metric]) for e in done if e.criterion == criterion and metric in e.metrics)
            axis.plot([100 * x for x, _ in points], [100 * y for _, y in points], label=criterion,
                      marker="os^D"[index // 10 % 4], linestyle=("-", "--", ":", "-.")[index // 10 % 4])
        for dense in (e for e in entries if e.kind == "dense" and metric in e.metrics):
            axis.axhline(100 * dense.metrics[metric], color="black", linestyle="--", linewidth=0.8, label="dense")
        axis.set_title(metric)
        axis.set_xlabel(f"kept {unit} (%)")
        axis.set_ylabel("test accuracy (%)")
        axis.invert_xaxis()
    return _finish(plt, figure, axes, path, legend_width=0.16)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
