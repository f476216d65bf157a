"""``harp-prune bench``: every registered structured criterion pruned to the same budgets,
fine-tuned the same way, then attacked, certified, sized and timed, in one resumable run."""
from harp_plugin.bench.config import BenchConfig, BenchConfigError
from harp_plugin.bench.criteria import Budget, Criterion, registered_criteria
from harp_plugin.bench.leaderboard import format_markdown, format_text, write_leaderboard
from harp_plugin.bench.run import BenchEntry, run_bench

__all__ = [
    "BenchConfig",
    "BenchConfigError",
    "BenchEntry",
    "Budget",
    "Criterion",
    "format_markdown",
    "format_text",
    "registered_criteria",
    "run_bench",
    "write_leaderboard",
]
