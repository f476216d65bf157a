"""Command-line interface (``harp-prune``)."""
