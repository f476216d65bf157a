"""Shipping a pruned model: save and load it into its dense architecture, export it, time it."""
from harp_plugin.deploy.export import ExportError, ExportResult, export_model
from harp_plugin.deploy.latency import (
    Latency, LatencyComparison, compare_latency, measure_latency, measure_side_by_side,
)
from harp_plugin.deploy.pruned import PrunedRecord, fold_pruning_masks, load_pruned, read_pruned, save_pruned

__all__ = [
    "ExportError",
    "ExportResult",
    "Latency",
    "LatencyComparison",
    "PrunedRecord",
    "compare_latency",
    "export_model",
    "fold_pruning_masks",
    "load_pruned",
    "measure_latency",
    "measure_side_by_side",
    "read_pruned",
    "save_pruned",
]
