"""The review rubric shown in the app: Kolors' five levels, the four caption criteria, model hints.

Contract:
- ``LEVELS``: ``(level, name, what it covers)`` for levels 1..5 (Kolors): 1 unsafe, 2 artificial
  traces, 3 parameter errors, 4 ordinary snapshot, 5 high aesthetic.
- ``CRITERIA``: ``(criterion, what a 5 means)`` for the caption criteria of ``curate.schema``
  (completeness, correlation, hallucination, subjectivity), each scored 1..5, 5 best.
- ``hint_lines(hints_json)``: one short line per model stat of an item that hints at a level
  (faces, OCR area and text, border, collage, watermark, NSFW, exposure, clarity, aesthetic), in
  rubric order, ``"→ n"`` naming the level it points to when its value crosses the hint threshold.
  Keys are read with or without the ``stat_`` prefix; unknown keys and nulls are left out;
  an empty, null or malformed ``hints_json`` gives ``[]`` (hints are advice, never an error).
"""
from __future__ import annotations

import json

from curate.schema import CAPTION_CRITERIA

LEVELS = (
    (1, "unsafe", "porn, violence, gore, horror"),
    (2, "artificial traces", "logo, watermark, borders, collage"),
    (3, "parameter errors", "blur, over/under-exposure, no clear subject"),
    (4, "ordinary snapshot", "fine, nothing special"),
    (5, "high aesthetic", "exposure, contrast, tone, saturation, a story"),
)

_CRITERION_BEST = {
    "completeness": "covers every main element",
    "correlation": "matches this image",
    "hallucination": "invents nothing",
    "subjectivity": "objective, no opinions",
}
CRITERIA = tuple((name, _CRITERION_BEST[name]) for name in CAPTION_CRITERIA)

# (key without stat_, label, format, threshold, level it hints at when value >= threshold)
_HINTS = (
    ("nsfw", "NSFW", "{:.2f}", 0.5, 1),
    ("clip_nsfw", "CLIP NSFW", "{:.2f}", 0.5, 1),
    ("watermark", "watermark", "{:.2f}", 0.5, 2),
    ("ocr_area", "OCR area", "{:.0%}", 0.05, 2),
    ("border", "border", "{:.2f}", 0.5, 2),
    ("collage", "collage", "{:.2f}", 0.5, 2),
    ("clarity_norm", "clarity", "{:.2f}", None, None),
    ("overexposed", "overexposed", "{:.0%}", 0.25, 3),
    ("underexposed", "underexposed", "{:.0%}", 0.25, 3),
    ("face_count", "faces", "{:d}", None, None),
    ("faces", "faces", "{:d}", None, None),
    ("face_area", "face area", "{:.0%}", None, None),
    ("aesthetic", "aesthetic", "{:.1f}", 6.0, 5),
)


def _parse(hints_json: str | None) -> dict:
    if not hints_json:
        return {}
    try:
        hints = json.loads(hints_json)
    except ValueError:
        return {}
    if not isinstance(hints, dict):
        return {}
    return {str(key).removeprefix("stat_"): value for key, value in hints.items()}


def hint_lines(hints_json: str | None) -> list[str]:
    hints = _parse(hints_json)
    lines = []
    for key, label, fmt, threshold, level in _HINTS:
        value = hints.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if fmt == "{:d}":
            value = int(value)
        line = f"{label} {fmt.format(value)}"
        if threshold is not None and value >= threshold:
            line += f" → {level}"
        lines.append(line)
    text = hints.get("ocr_text")
    if isinstance(text, str) and text.strip():
        lines.append(f"text {' '.join(text.split())[:40]!r}")
    return lines
