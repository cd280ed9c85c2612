"""The report's caption statistics: lengths, empty captions, top words, boilerplate, repeats.

Contract: ``caption_stats(table)`` reads ``caption`` and ``keep`` of every row and returns a
``CaptionStats``: per row the caption length in characters (NaN for an empty caption: null
or only whitespace) and words; the number of empty captions, kept and rejected; the
``TOP_WORDS`` most frequent words (lowercased ``[^\\W\\d_]{2,}`` runs, ``STOPWORDS`` left out)
with the number of captions holding each; for each ``BOILERPLATE`` pattern the number of
captions it matches (case-insensitive) and the first such caption; the ``TOP_REPEATS`` most
repeated non-empty captions (shared by 2 rows or more). ``label_counts(table, config)``
counts the values of the text stat columns (the caption filters' language and kind).
``caption_html(stats, charts, labels)`` renders it all; every caption text is truncated and
HTML-escaped.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from html import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig

from curate.report.text import pct, truncate
from curate.schema import STAT_COLUMNS

TOP_WORDS = 25
TOP_REPEATS = 10
TOP_LABELS = 10
SHOWN_CHARS = 100
ZERO = ' class="zero"'
WORD = re.compile(r"[^\W\d_]{2,}")
STOPWORDS = frozenset(
    "a an the and or of in on at to for with by from is are was were be as it its this that these those "
    "into over under near his her their our your my we you he she they them him not no".split()
)
# label -> pattern; web alt-text and scraped-caption boilerplate that says nothing about the image.
BOILERPLATE = {
    "image may contain": r"\bimage may contain\b",
    "stock photo / image": r"\bstock (photo|image|picture|footage|illustration)s?\b",
    "royalty-free": r"\broyalty[- ]free\b",
    "stock agency name": r"\b(shutterstock|getty ?images|alamy|istock(photo)?|dreamstime|123rf|depositphotos|adobe stock)\b",
    "copyright notice": r"(©|\(c\)\s*\d{4}|\bcopyright\b|\ball rights reserved\b)",
    "click / download / buy": r"\b(click (here|to)|download (now|free)|buy now|shop now)\b",
    "placeholder text": r"^\s*(untitled|no description|no caption|image|photo|picture|null|none|n/?a)\s*\.?\s*$",
    "file name": r"^\s*\S+\.(jpe?g|png|gif|webp|bmp|tiff?)\s*$|\b(IMG|DSC|DSCN|DCIM)[_-]?\d{3,}",
    "URL only": r"^\s*(https?://|www\.)\S+\s*$",
    "contains a URL": r"(https?://|www\.)\S+",
}
_PATTERNS = {label: re.compile(p, re.IGNORECASE) for label, p in BOILERPLATE.items()}


@dataclass
class CaptionStats:
    rows: int
    chars: np.ndarray  # per row, NaN where the caption is empty
    words: np.ndarray
    kept: np.ndarray  # bool per row
    empty_kept: int
    empty_rejected: int
    top_words: list[tuple[str, int]]
    boilerplate: list[tuple[str, int, str | None]]  # label, captions matching, first match
    repeats: list[tuple[str, int]]


def caption_stats(table: pa.Table) -> CaptionStats:
    n = table.num_rows
    captions = table.column("caption").to_pylist() if "caption" in table.column_names else [None] * n
    keep = table.column("keep").to_pylist() if "keep" in table.column_names else [None] * n
    kept = np.array([bool(k) for k in keep], dtype=bool)
    text = [c.strip() if isinstance(c, str) else "" for c in captions]
    empty = np.array([not t for t in text], dtype=bool)
    chars = np.array([len(t) if t else np.nan for t in text], dtype=np.float64)
    words = np.array([len(t.split()) if t else np.nan for t in text], dtype=np.float64)
    vocabulary: Counter[str] = Counter()
    matches: dict[str, list] = {label: [0, None] for label in BOILERPLATE}
    for t in text:
        if not t:
            continue
        vocabulary.update({w for w in (m.lower() for m in WORD.findall(t)) if w not in STOPWORDS})
        for label, pattern in _PATTERNS.items():
            if pattern.search(t):
                matches[label][0] += 1
                matches[label][1] = matches[label][1] or t
    repeats = [(c, k) for c, k in Counter(t for t in text if t).most_common(TOP_REPEATS) if k > 1]
    return CaptionStats(
        rows=n, chars=chars, words=words, kept=kept,
        empty_kept=int((empty & kept).sum()), empty_rejected=int((empty & ~kept).sum()),
        top_words=vocabulary.most_common(TOP_WORDS),
        boilerplate=[(label, k, first) for label, (k, first) in matches.items()],
        repeats=repeats,
    )


def label_counts(table: pa.Table, config: CurateConfig) -> list[tuple[str, list[tuple[str, int, int]], list[str] | None]]:
    """Per text stat column with a value (``stat_caption_lang``, ...): its ``TOP_LABELS`` values
    as (value, kept rows, rejected rows), most rows first, and the values a text rule lets pass."""
    kept = pc.fill_null(table.column("keep"), False).to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0, bool)
    out = []
    for column in STAT_COLUMNS:
        if column not in table.column_names or not pa.types.is_string(table.schema.field(column).type):
            continue
        values = table.column(column).to_pylist()
        if all(v is None for v in values):
            continue
        counts: dict[str, list[int]] = {}
        for value, k in zip(values, kept):
            counts.setdefault("(none)" if value is None else value, [0, 0])[0 if k else 1] += 1
        top = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:TOP_LABELS]
        passing = next((list(r.values) for r in config.rules if r.column == column and r.values), None)
        out.append((column, [(v, k, r) for v, (k, r) in top], passing))
    return out


def _labels_html(labels: list) -> str:
    out = []
    for column, top, passing in labels:
        rule = f'<p class="muted">rule: only {escape(", ".join(passing))} pass</p>' if passing else ""
        body = "".join(
            f'<tr data-value="{escape(v)}"><td>{escape(truncate(v, SHOWN_CHARS))}'
            f'{" ✓" if passing and v in passing else ""}</td><td class="n">{k:,}</td><td class="n">{r:,}</td></tr>'
            for v, k, r in top
        )
        out.append(f'<div data-column="{escape(column)}"><h3>{escape(column)}</h3>{rule}<table><thead><tr><th>value</th>'
                   f'<th class="n">kept</th><th class="n">rejected</th></tr></thead><tbody>{body}</tbody></table></div>')
    return "".join(out)


def _quantiles(values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if not v.size:
        return "<td>–</td>" * 4
    q = np.percentile(v, [5, 50, 95])
    return "".join(f'<td class="n">{x:,.0f}</td>' for x in (*q, v.max()))


def caption_html(stats: CaptionStats, charts: str, labels: list) -> str:
    """``charts``: the histograms' HTML; ``labels``: ``label_counts``."""
    n = stats.rows
    empty = stats.empty_kept + stats.empty_rejected
    with_caption = n - empty
    out = [
        f'<p data-empty="{empty}">{with_caption:,} of {n:,} rows have a caption; <b>{empty:,} empty</b> '
        f"({pct(empty, n)}: {stats.empty_kept:,} kept, {stats.empty_rejected:,} rejected). Empty: no caption, "
        "or only whitespace.</p>",
        '<table class="quantiles"><thead><tr><th></th><th class="n">5%</th><th class="n">median</th>'
        f'<th class="n">95%</th><th class="n">max</th></tr></thead><tbody>'
        f"<tr><td>characters</td>{_quantiles(stats.chars)}</tr><tr><td>words</td>{_quantiles(stats.words)}</tr>"
        "</tbody></table>",
    ]
    if charts:
        out.append(f'<div class="charts">{charts}</div>')
    words = " ".join(f'<span class="word" title="{pct(k, with_caption)} of captions">{escape(w)} <b>{k:,}</b></span>'
                     for w, k in stats.top_words) or '<span class="muted">no words</span>'
    if labels:
        out.append(f'<div class="columns">{_labels_html(labels)}</div>')
    boiler = "".join(
        f'<tr data-pattern="{escape(label)}"{"" if k else ZERO}><td>{escape(label)}</td><td class="n">{k:,}</td>'
        f'<td>{escape(truncate(first, SHOWN_CHARS)) if first else ""}</td></tr>'
        for label, k, first in stats.boilerplate
    )
    repeats = "".join(f'<tr><td class="n">{k:,}</td><td>{escape(truncate(c, SHOWN_CHARS))}</td></tr>'
                      for c, k in stats.repeats) or '<tr><td colspan="2" class="muted">no caption repeats</td></tr>'
    out.append(
        '<div class="columns">'
        f'<div class="words"><h3>Top words <span class="muted">(captions holding each)</span></h3><p>{words}</p></div>'
        '<div><h3>Boilerplate</h3><table><thead><tr><th>pattern</th><th class="n">captions</th><th>first one</th>'
        f'</tr></thead><tbody>{boiler}</tbody></table></div></div>'
        '<h3>Most repeated captions</h3><table><thead><tr><th class="n">rows</th><th>caption</th></tr></thead>'
        f"<tbody>{repeats}</tbody></table>"
    )
    return "\n".join(out)
