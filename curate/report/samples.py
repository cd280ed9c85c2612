"""The report's sample sections: thumbnails per reject reason and of kept rows, as HTML.

Contract: ``samples_html(table, config, steps, first, carrying, fetch_image, out_dir, folder)``
renders one ``<section data-reason=...>`` per reason present in the table (in funnel order),
then one for kept rows. Each shows up to ``config.report.thumbnails_per_reason`` rows
(``thumbnails.sample_rows``) as ``<figure>``: the thumbnail (a relative ``<img>`` under
``folder``, which lies inside ``out_dir``) or a placeholder saying why there is none, the
truncated caption, the size, the error message of a decode failure, and a tooltip with the
source, size, stats, reasons and duplicate target. All data text is HTML-escaped.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from curate.config import CurateConfig
from curate.reasons import DECODE_FAILURES, DESCRIPTIONS
from curate.report.funnel import KEPT
from curate.report.text import fmt, n_rows, truncate
from curate.report.thumbnails import Thumb, render_thumbnails, sample_rows
from curate.schema import STAT_COLUMNS

CAPTION_CHARS = 120
TOOLTIP_CAPTION_CHARS = 400
ERROR_CHARS = 200


def _tooltip(row: dict) -> str:
    lines = [f"id {str(row.get('id', ''))[:16]}…"]
    key = f" [{row['source_key']}]" if row.get("source_key") else ""
    lines.append(f"source {row.get('source_uri')}{key} #{row.get('source_index')}")
    if row.get("width") is not None:
        lines.append(f"{row['width']}×{row['height']} {row.get('image_format') or ''}".rstrip())
    stats = [
        f"{c.removeprefix('stat_')} {fmt(row.get(c))}"
        for c in STAT_COLUMNS
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


def _figure_html(thumb: Thumb, out_dir: Path) -> str:
    row = thumb.row
    caption = row.get("caption")
    caption_text = escape(truncate(caption, CAPTION_CHARS)) if caption else '<span class="muted">(no caption)</span>'
    if thumb.file is not None:
        src = escape(thumb.file.relative_to(out_dir).as_posix())
        w, h = thumb.size
        alt = escape(truncate(caption or "", 80))
        visual = f'<img src="{src}" width="{w}" height="{h}" alt="{alt}" loading="lazy">'
    else:
        visual = f'<div class="placeholder">{escape(thumb.why or "")}</div>'
    meta = f"{row['width']}×{row['height']}" if row.get("width") is not None else "size unknown"
    error = ""
    if row.get("error_message") and any(r in DECODE_FAILURES for r in row.get("reasons") or []):
        error = f'<span class="error">{escape(truncate(row["error_message"], ERROR_CHARS))}</span>'
    return (
        f'<figure class="thumb" title="{escape(_tooltip(row))}">{visual}'
        f'<figcaption>{caption_text}<span class="meta">{escape(meta)}</span>{error}</figcaption></figure>'
    )


def samples_html(
    table: pa.Table,
    config: CurateConfig,
    steps: list[str],
    first: np.ndarray,
    carrying: dict[str, np.ndarray],
    fetch_image: Callable[[dict], bytes | None],
    out_dir: Path,
    folder: Path,
) -> str:
    """One section per reason present (funnel order), then kept; thumbnails go to ``folder``."""
    per = config.report.thumbnails_per_reason
    if per == 0:
        return '<p class="muted">thumbnails are off (report.thumbnails_per_reason is 0)</p>'
    sections = [(i, s, carrying[s]) for i, s in enumerate(steps) if s in carrying]
    sections.append((len(steps), KEPT, np.flatnonzero(first < 0)))
    out = []
    for i, name, candidates in sections:
        if name == KEPT:
            head = f"kept — {n_rows(len(candidates))}"
        else:
            removed = int(np.count_nonzero(first == i))
            head = f"{name} — {n_rows(removed)} removed at this step, {n_rows(len(candidates))} carry the reason"
        picked = sample_rows(table, candidates, per)
        thumbs = render_thumbnails(
            table.take(pa.array(picked, pa.int64())).to_pylist() if picked else [],
            fetch_image, folder, f"s{i:02d}_", config.decode, config.report.thumbnail_side,
        )
        figures = "".join(_figure_html(t, out_dir) for t in thumbs) or '<p class="muted">no rows</p>'
        meaning = "rows with no reason" if name == KEPT else DESCRIPTIONS.get(name, "not a known reason code")
        out.append(
            f'<section data-reason="{escape(name)}"><h3>{escape(head)}</h3>'
            f'<p class="muted">{escape(meaning)}</p><div class="grid">{figures}</div></section>'
        )
    return "\n".join(out)
