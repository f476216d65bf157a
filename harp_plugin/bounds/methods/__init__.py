"""Bound methods over a bound graph, one per file: interval (IBP) and backward (CROWN)."""
