"""The dense-vs-pruned comparison table, as plain text for the terminal and Markdown for files."""
from __future__ import annotations

from harp_plugin.robust.evaluation import EvaluationReport


def comparison_rows(dense: EvaluationReport, pruned: EvaluationReport) -> list[tuple[str, str, str]]:
    """(metric, dense, pruned) rows; robust accuracy gets one row per attack."""
    rows = [
        ("clean accuracy", _pct(dense.clean_accuracy), _pct(pruned.clean_accuracy)),
        ("balanced accuracy", _pct(dense.balanced_accuracy), _pct(pruned.balanced_accuracy)),
    ]
    rows += [
        (f"robust accuracy ({name})", _pct(value), _pct(pruned.robust_accuracy.get(name, float("nan"))))
        for name, value in dense.robust_accuracy.items()
    ]
    rows += [
        (name, _pct(value), _pct(pruned.extras.get(name, float("nan"))))
        for name, value in dense.extras.items()
    ]
    rows += [
        ("parameters", f"{dense.parameters:,}", f"{pruned.parameters:,} ({_ratio(pruned.parameters, dense.parameters)})"),
        ("nonzero parameters", f"{dense.nonzero_parameters:,}", f"{pruned.nonzero_parameters:,}"),
        ("MACs", f"{dense.macs:,}", f"{pruned.macs:,} ({_ratio(pruned.macs, dense.macs)})"),
        ("weight sparsity", _pct(dense.sparsity), _pct(pruned.sparsity)),
        ("test samples", str(dense.samples), str(pruned.samples)),
    ]
    return rows


def format_text(rows: list[tuple[str, str, str]]) -> str:
    header = ("metric", "dense", "pruned")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    body = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}" for r in [header, *rows]
    ]
    return "\n".join([body[0], line, *body[1:]])


def format_markdown(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| metric | dense | pruned |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.1%} of dense" if whole else "n/a"
