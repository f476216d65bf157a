"""A bar chart of dense vs pruned accuracy, clean and under each attack."""
from __future__ import annotations

from pathlib import Path

from harp_plugin.robust.evaluation import EvaluationReport


def plot_comparison(dense: EvaluationReport, pruned: EvaluationReport, path: Path) -> Path | None:
    """Write a PNG; returns None (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = ["clean", *dense.robust_accuracy]
    dense_values = [dense.clean_accuracy, *dense.robust_accuracy.values()]
    pruned_values = [pruned.clean_accuracy, *(pruned.robust_accuracy.get(k, 0.0) for k in dense.robust_accuracy)]
    positions = range(len(labels))
    figure, axis = plt.subplots(figsize=(1.8 * len(labels) + 2, 3.5))
    axis.bar([p - 0.2 for p in positions], [100 * v for v in dense_values], width=0.4, label="dense")
    axis.bar([p + 0.2 for p in positions], [100 * v for v in pruned_values], width=0.4, label=f"pruned ({pruned.macs / max(dense.macs, 1):.0%} MACs)")
    axis.set_xticks(list(positions), labels)
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 100)
    axis.legend(loc="lower left")
    axis.set_title("dense vs pruned")
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    figure.savefig(partial, dpi=120)
    plt.close(figure)
    partial.replace(path)
    return path
