"""One thumbnail ``<figure>`` of a report row, shared by every section that shows rows.

Contract: ``figure_html(row, thumb, note="", css="", data=None, text=False)`` renders the thumbnail
(an inlined ``<img>``, with the row's detected face and text boxes drawn over it by
``boxes.overlay_svg`` inside a ``div.boxed``) or a placeholder saying why there is none, the
truncated caption, the size, the error message of a decode failure, an optional ``note`` line
(e.g. a stat value), with ``text`` the recognised text (``ocr_text``, lines joined by `` / ``,
truncated to ``OCR_CHARS``, in ``span.ocr``), and a tooltip with the source, size, CPU and
model stats, reasons and duplicate target. The figure carries ``data-id`` and ``data-row-key``
for tools and tests. All data text is HTML-escaped.
"""
from __future__ import annotations

from html import escape

from curate.reasons import DECODE_FAILURES
from curate.report.boxes import overlay_svg
from curate.report.text import fmt, truncate
from curate.report.thumbnails import Thumb
from curate.schema import MODEL_STAT_COLUMNS, STAT_COLUMNS

CAPTION_CHARS = 90
TOOLTIP_CAPTION_CHARS = 400
ERROR_CHARS = 200
OCR_CHARS = 160


def ocr_line(text: str) -> str:
    """``ocr_text`` on one line (its lines joined by `` / ``), truncated; not escaped."""
    return truncate(" / ".join(line.strip() for line in text.splitlines() if line.strip()), OCR_CHARS)


def tooltip(row: dict) -> str:
    lines = [f"id {str(row.get('id', ''))[:16]}…"]
    key = f" [{row['source_key']}]" if row.get("source_key") else ""
    lines.append(f"source {row.get('source_uri')}{key} #{row.get('source_index')}")
    if row.get("width") is not None:
        lines.append(f"{row['width']}×{row['height']} {row.get('image_format') or ''}".rstrip())
    stats = [
        f"{c.removeprefix('stat_')} {fmt(row.get(c))}"
        for c in (*STAT_COLUMNS, *MODEL_STAT_COLUMNS)
        if not c.endswith("hash") and row.get(c) is not None
    ]
    if stats:
        lines.append(", ".join(stats))
    if row.get("reasons"):
        lines.append("reasons: " + ", ".join(str(r) for r in row["reasons"]))
    if row.get("dup_of"):
        lines.append(f"duplicate of {row['dup_of'][:16]}…")
    if row.get("caption"):
        lines.append(truncate(row["caption"], TOOLTIP_CAPTION_CHARS))
    return "\n".join(lines)


def figure_html(row: dict, thumb: Thumb, note: str = "", css: str = "", data: dict[str, str] | None = None,
                text: bool = False) -> str:
    """``data``: extra ``data-<name>`` attributes of the figure; ``text``: show the row's ``ocr_text``."""
    caption = row.get("caption")
    caption_text = escape(truncate(caption, CAPTION_CHARS)) if caption else '<span class="muted">(no caption)</span>'
    if thumb.uri is not None:
        w, h = thumb.size
        alt = escape(truncate(caption or "", 80))
        visual = f'<img src="{thumb.uri}" width="{w}" height="{h}" alt="{alt}">'
        overlay = overlay_svg(row, (w, h))
        if overlay:
            visual = f'<div class="boxed" style="width:{w}px;height:{h}px">{visual}{overlay}</div>'
    else:
        visual = f'<div class="placeholder">{escape(thumb.why or "")}</div>'
    meta = f"{row['width']}×{row['height']}" if row.get("width") is not None else "size unknown"
    error = ""
    if row.get("error_message") and any(r in DECODE_FAILURES for r in row.get("reasons") or []):
        error = f'<span class="error">{escape(truncate(row["error_message"], ERROR_CHARS))}</span>'
    note_html = f'<span class="note">{escape(note)}</span>' if note else ""
    if text:
        found = ocr_line(row["ocr_text"]) if row.get("ocr_text") else ""
        note_html += (f'<span class="ocr" title="recognised text (ocr_text)">{escape(found)}</span>' if found else
                      '<span class="ocr muted">(no text recognised)</span>')
    key = "" if row.get("row_key") is None else f' data-row-key="{int(row["row_key"])}"'
    key += "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in (data or {}).items())
    return (
        f'<figure class="thumb {escape(css)}" title="{escape(tooltip(row))}" data-id="{escape(str(row.get("id") or ""))}"'
        f'{key}>{visual}<figcaption>{note_html}{caption_text}<span class="meta">{escape(meta)}</span>{error}'
        f"</figcaption></figure>"
    )
