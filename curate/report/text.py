"""Plain-text formatting shared by the report's HTML parts. Results are not HTML-escaped."""
from __future__ import annotations

import pyarrow as pa


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


def anchor(reason: str) -> str:
    """The HTML id of a reason's section: ``reason-`` and the name with anything but [a-z0-9_-] as ``-``."""
    return "reason-" + "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in reason.lower())


def is_numeric(table: pa.Table, column: str) -> bool:
    """Whether ``table``'s ``column`` holds integers or floats (not text labels, not lists)."""
    typ = table.schema.field(column).type
    return pa.types.is_integer(typ) or pa.types.is_floating(typ)
