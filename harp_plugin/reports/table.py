"""The comparison table of a run's models, as plain text for the terminal and Markdown for files.

The first column is the reference: size ratios of the other columns are relative to it.
"""
from __future__ import annotations

from typing import Mapping

from harp_plugin.robust.evaluation import EvaluationReport

Row = tuple[str, ...]


def comparison_rows(
    columns: Mapping[str, EvaluationReport], epochs: Mapping[str, int] | None = None
) -> list[Row]:
    """(metric, one value per column) rows; robust accuracy gets one row per attack.

    With ``epochs`` (label → training epochs) the table states every model's training budget,
    so a reader sees whether a difference could come from training length rather than pruning.
    """
    reports = list(columns.values())
    reference = reports[0]
    rows: list[Row] = []
    if epochs is not None:
        rows.append(("training epochs", *(str(epochs[label]) for label in columns)))
    rows += [
        ("clean accuracy", *(_pct(r.clean_accuracy) for r in reports)),
        ("balanced accuracy", *(_pct(r.balanced_accuracy) for r in reports)),
    ]
    rows += [
        (f"robust accuracy ({name})", *(_pct(r.robust_accuracy.get(name, float("nan"))) for r in reports))
        for name in reference.robust_accuracy
    ]
    rows += [(name, *(_pct(r.extras.get(name, float("nan"))) for r in reports)) for name in reference.extras]
    rows += [
        ("parameters", *(_sized(r.parameters, reference.parameters, r is reference) for r in reports)),
        ("nonzero parameters", *(f"{r.nonzero_parameters:,}" for r in reports)),
        ("MACs", *(_sized(r.macs, reference.macs, r is reference) for r in reports)),
        ("weight sparsity", *(_pct(r.sparsity) for r in reports)),
        ("test samples", *(str(r.samples) for r in reports)),
    ]
    return rows


def format_text(rows: list[Row], labels: tuple[str, ...]) -> str:
    header = ("metric", *labels)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    body = [
        "  ".join([f"{r[0]:<{widths[0]}}", *(f"{v:>{w}}" for v, w in zip(r[1:], widths[1:]))])
        for r in [header, *rows]
    ]
    return "\n".join([body[0], line, *body[1:]])


def format_markdown(rows: list[Row], labels: tuple[str, ...]) -> str:
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _sized(count: int, reference: int, is_reference: bool) -> str:
    if is_reference:
        return f"{count:,}"
    return f"{count:,} ({count / reference:.1%} of dense)" if reference else f"{count:,} (n/a)"
