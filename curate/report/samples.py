"""The report's per-reason pages: thumbnails of the rows of each reject reason and of kept rows.

Contract:
- ``pick_samples(table, steps, first, carrying, per)`` chooses, for every reason present in
  the table (in funnel order) and then for kept rows, up to ``PAGE_FACTOR * per`` rows
  (``thumbnails.sample_rows``), as ``Page`` objects; none when ``per`` is 0.
- ``samples_html(pages, gallery, per, text_reasons=frozenset())`` renders one anchored
  ``<section id="reason-<name>" data-reason=...>`` per page: its first ``per`` thumbnails, and
  the rest of its rows in a ``<details class="more">`` below them. Thumbnails come from the
  rendered ``gallery``, with the rows' detected boxes drawn on them (``figures``) and, on a page
  with any box, the boxes' legend line; the figures of the pages in ``text_reasons``
  (``models_html.text_reasons``: ``text_heavy`` and rules over OCR columns) show the
  recognised text.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np
import pyarrow as pa

from curate.reasons import DESCRIPTIONS
from curate.report.boxes import has_boxes, legend_html
from curate.report.figures import figure_html
from curate.report.funnel import KEPT
from curate.report.text import anchor, n_rows
from curate.report.thumbnails import Gallery, sample_rows

PAGE_FACTOR = 4  # a reason's page shows up to this many times report.thumbnails_per_reason rows


@dataclass
class Page:
    name: str
    head: str
    rows: list[dict]


def pick_samples(
    table: pa.Table, steps: list[str], first: np.ndarray, carrying: dict[str, np.ndarray], per: int
) -> list[Page]:
    if per == 0:
        return []
    sections = [(i, s, carrying[s]) for i, s in enumerate(steps) if s in carrying]
    sections.append((len(steps), KEPT, np.flatnonzero(first < 0)))
    pages = []
    for i, name, candidates in sections:
        if name == KEPT:
            head = f"kept — {n_rows(len(candidates))}"
        else:
            removed = int(np.count_nonzero(first == i))
            head = f"{name} — {n_rows(removed)} removed at this step, {n_rows(len(candidates))} carry the reason"
        picked = sample_rows(table, candidates, PAGE_FACTOR * per)
        rows = table.take(pa.array(picked, pa.int64())).to_pylist() if picked else []
        pages.append(Page(name, head, rows))
    return pages


def samples_html(pages: list[Page], gallery: Gallery, per: int, text_reasons: frozenset[str] = frozenset()) -> str:
    if per == 0:
        return '<p class="muted">thumbnails are off (report.thumbnails_per_reason is 0)</p>'
    out = []
    for page in pages:
        figures = [figure_html(row, gallery.thumb(row), text=page.name in text_reasons) for row in page.rows]
        legend = legend_html() if any(has_boxes(row) for row in page.rows) else ""
        shown = "".join(figures[:per]) or '<p class="muted">no rows</p>'
        more = ""
        if len(figures) > per:
            more = (f'<details class="more"><summary>{len(figures) - per} more</summary>'
                    f'<div class="grid">{"".join(figures[per:])}</div></details>')
        meaning = "rows with no reason" if page.name == KEPT else DESCRIPTIONS.get(page.name, "not a known reason code")
        out.append(
            f'<section id="{anchor(page.name)}" data-reason="{escape(page.name)}"><h3>{escape(page.head)}</h3>'
            f'<p class="muted">{escape(meaning)}</p>{legend}<div class="grid">{shown}</div>{more}</section>'
        )
    return "\n".join(out)
