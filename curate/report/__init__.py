"""The HTML run report: ``funnel(table, config)`` and ``write_report(out_dir, table, config, fetch_image, ...)``
(``curate.report.html``); ``python -m curate.report.shot`` takes its screenshot."""
from __future__ import annotations

from curate.report.funnel import funnel
from curate.report.html import write_report

__all__ = ["funnel", "write_report"]
