"""Reports: the comparison table, report.json / report.md, and the plot."""
from harp_plugin.reports.table import comparison_rows, format_markdown, format_text
from harp_plugin.reports.writers import write_run_report, write_text_atomic

__all__ = ["comparison_rows", "format_markdown", "format_text", "write_run_report", "write_text_atomic"]
