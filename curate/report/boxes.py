"""Detected boxes (faces, text lines) drawn over a report thumbnail as an inline SVG overlay.

Contract:
- ``BOX_COLUMNS`` maps each box column of the ``models`` group (``curate.schema.BOX_TYPE``
  lists, fractions of the upright frame) to its kind and colour: ``face_boxes`` -> ``face``,
  ``ocr_boxes`` -> ``text``.
- ``has_boxes(row)``: whether the row holds at least one box.
- ``overlay_svg(row, size)``: for a thumbnail of ``size`` = (width, height) pixels, one
  ``<svg class="boxes">`` of that size (laid over the ``<img>`` by the report's CSS,
  ``div.boxed``) with one ``<rect class="box" data-kind=face|text>`` per box at
  ``x = x0 * width``, ``y = y0 * height``, ``width = (x1 - x0) * width``, ``height = (y1 - y0) * height``
  (pixels, one decimal), unfilled, in the kind's colour, with the score as its ``<title>``;
  ``""`` when the row has no boxes. A box the data gives upside down (x1 < x0) is drawn
  from its smaller corner. The thumbnail is the same upright frame the model saw, scaled,
  so fractions map straight onto it.
- ``legend_html()``: the one legend line naming each kind's colour.
"""
from __future__ import annotations

from html import escape

BOX_COLUMNS = {"face_boxes": ("face", "#ffd400"), "ocr_boxes": ("text", "#00e5ff")}
LABELS = {"face": "faces (face_boxes)", "text": "text lines (ocr_boxes)"}
STROKE = 1.5


def has_boxes(row: dict) -> bool:
    return any(row.get(column) for column in BOX_COLUMNS)


def _rect(b: dict, kind: str, colour: str, w: int, h: int) -> str | None:
    try:
        x0, x1 = sorted((float(b["x0"]), float(b["x1"])))
        y0, y1 = sorted((float(b["y0"]), float(b["y1"])))
    except (KeyError, TypeError, ValueError):
        return None
    score = b.get("score")
    title = f"{kind} {score:.2f}" if isinstance(score, (int, float)) else kind
    return (f'<rect class="box" data-kind="{kind}" x="{x0 * w:.1f}" y="{y0 * h:.1f}" width="{(x1 - x0) * w:.1f}" '
            f'height="{(y1 - y0) * h:.1f}" fill="none" stroke="{colour}" stroke-width="{STROKE}">'
            f"<title>{escape(title)}</title></rect>")


def overlay_svg(row: dict, size: tuple[int, int]) -> str:
    w, h = size
    rects = []
    for column, (kind, colour) in BOX_COLUMNS.items():
        for b in row.get(column) or []:
            rect = _rect(b, kind, colour, w, h) if isinstance(b, dict) else None
            if rect:
                rects.append(rect)
    if not rects:
        return ""
    return (f'<svg class="boxes" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            + "".join(rects) + "</svg>")


def legend_html() -> str:
    items = "".join(
        f'<span class="box-key" data-kind="{kind}"><span class="swatch" style="border-color:{colour}"></span>'
        f"{escape(LABELS[kind])}</span>"
        for kind, colour in BOX_COLUMNS.values()
    )
    return f'<p class="box-legend muted">Boxes drawn on thumbnails: {items}</p>'
