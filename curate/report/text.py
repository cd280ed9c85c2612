"""Plain-text formatting shared by the report's HTML parts. Results are not HTML-escaped."""
from __future__ import annotations


def pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def fmt(value: object) -> str:
    """A number as shown in the report: 4 significant digits, thousands separators, – for None."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def n_rows(n: int) -> str:
    """``1 row``, ``2 rows``."""
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
