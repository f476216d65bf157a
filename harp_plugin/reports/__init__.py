"""Reports: the comparison table, report.json / report.md, certify reports, and the plot."""
from harp_plugin.reports.latency import format_latency
from harp_plugin.reports.table import comparison_rows, format_markdown, format_text
from harp_plugin.reports.writers import (
    OutputFolderError,
    check_writable,
    write_certify_report,
    write_run_report,
    write_text_atomic,
)

__all__ = [
    "OutputFolderError",
    "check_writable",
    "comparison_rows",
    "format_latency",
    "format_markdown",
    "format_text",
    "write_certify_report",
    "write_run_report",
    "write_text_atomic",
]
