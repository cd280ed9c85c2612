"""The HTML run report: ``funnel(table, config)`` and ``write_report(out_dir, table, config, fetch_image)``."""
from __future__ import annotations

from curate.report.funnel import funnel
from curate.report.html import write_report

__all__ = ["funnel", "write_report"]
