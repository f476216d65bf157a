"""A bar chart of the run's models (dense, dense same budget, pruned): clean and per attack."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from harp_plugin.robust.evaluation import EvaluationReport


def plot_comparison(columns: Mapping[str, EvaluationReport], path: Path) -> Path | None:
    """Write a PNG (the first column is the reference for MACs); returns None (and writes
    nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    reference = next(iter(columns.values()))
    labels = ["clean", *reference.robust_accuracy]
    positions = range(len(labels))
    width = 0.8 / len(columns)
    figure, axis = plt.subplots(figsize=(1.8 * len(labels) + 2, 3.5))
    for index, (name, report) in enumerate(columns.items()):
        values = [report.clean_accuracy, *(report.robust_accuracy.get(k, 0.0) for k in reference.robust_accuracy)]
        offset = (index - (len(columns) - 1) / 2) * width
        share = f" ({report.macs / max(reference.macs, 1):.0%} MACs)" if report is not reference else ""
        axis.bar([p + offset for p in positions], [100 * v for v in values], width=width, label=name + share)
    axis.set_xticks(list(positions), labels)
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 100)
    axis.legend(loc="lower left", fontsize="small")
    axis.set_title(" vs ".join(columns))
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    figure.savefig(partial, dpi=120)
    plt.close(figure)
    partial.replace(path)
    return path
