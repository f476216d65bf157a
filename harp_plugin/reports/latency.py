"""The latency table: measured speed-up beside the MAC and parameter ratios it is compared to."""
from __future__ import annotations

from typing import Sequence

from harp_plugin.deploy.latency import LatencyComparison
from harp_plugin.robust.evaluation import EvaluationReport

HEADER = ("batch", "dense ms", "pruned ms", "speed-up", "MAC ratio", "param ratio")


def latency_caption(rows: Sequence[LatencyComparison]) -> str:
    """How the numbers were taken (median, warm-up, threads, device, timer)."""
    first = rows[0]
    where = f"{first.threads} CPU thread{'s' if first.threads != 1 else ''}" if first.threads else first.device
    return (f"latency: median of {first.repeats} timed runs after {first.warmup} warm-up, {where} "
            f"({first.device}, {first.timer}); ratios are dense / pruned")


def latency_rows(
    rows: Sequence[LatencyComparison], dense: EvaluationReport, pruned: EvaluationReport
) -> list[tuple[str, ...]]:
    macs = f"{dense.macs / pruned.macs:.2f}x" if pruned.macs else "n/a"
    parameters = f"{dense.parameters / pruned.parameters:.2f}x" if pruned.parameters else "n/a"
    return [
        (str(row.batch), f"{row.dense_ms:.3f}", f"{row.pruned_ms:.3f}", f"{row.speedup:.2f}x", macs, parameters)
        for row in rows
    ]


def format_latency(
    rows: Sequence[LatencyComparison], dense: EvaluationReport, pruned: EvaluationReport, markdown: bool = False
) -> str:
    """The caption and the table, for the terminal (aligned) or Markdown; empty when not measured."""
    if not rows:
        return ""
    body = latency_rows(rows, dense, pruned)
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---:|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return latency_caption(rows) + "\n\n" + "\n".join(lines)
    widths = [max(len(r[i]) for r in [HEADER, *body]) for i in range(len(HEADER))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [HEADER, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return latency_caption(rows) + "\n" + "\n".join(lines)
