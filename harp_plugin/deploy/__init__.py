"""Shipping a pruned model: save and load it into its dense architecture, export it, time it."""
from harp_plugin.deploy.pruned import PrunedRecord, fold_pruning_masks, load_pruned, read_pruned, save_pruned

__all__ = ["PrunedRecord", "fold_pruning_masks", "load_pruned", "read_pruned", "save_pruned"]
