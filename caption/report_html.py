"""The caption report's HTML: ``page(facts, gallery, generated) -> str`` draws a
``caption.report_counts.Facts`` on one self-contained page in the curation report's style.

Contract: ``gallery`` is a rendered ``curate.report.thumbnails.Gallery`` holding the sample rows
(thumbnails as JPEG ``data:`` URIs); charts are inline SVG (``curate.report.plots.stat_svg``).
Sections, each an anchored ``<section id=...>``:
- ``run``: the output, the captions version shown, its stage and creation time, the other
  versions, and the version's manifest ``settings`` flattened to a key/value table
  (``a.b`` for nested mappings: whatever the captioner recorded);
- ``counts`` (every row; ``data-count`` attributes for tools): rows, kept, captioned, failed,
  empty, not kept, fallbacks, synthetic without an original, no caption at all, on the
  synthetic caption, any other status; then the realised mix (``<p class="mix">`` with
  ``data-realised``, ``data-eligible``, ``data-configured``) beside the configured one;
- ``tokens``: per encoder a histogram (``<div class="hist" data-encoder data-exact>``) of the
  original (group 0) and the synthetic (group 1) caption lengths in text tokens, overlaid (not
  stacked), the text room of the encoder's sequence (and of the run's smaller budget of that
  encoder) dashed; an inexact encoder is titled ``(estimate)``;
- ``languages``: the counts of ``caption_synthetic_lang`` and, when any row has one, of
  ``caption_synthetic_2_lang`` (``<table data-column=...>``);
- ``failures``: the ``TOP_ERRORS`` most frequent ``caption_error`` messages, truncated, with counts;
- ``samples``: the sample rows side by side, ``<tr data-row-key>``: thumbnail, original
  caption, synthetic caption (and the second one when present; each cut at ``CAPTION_CHARS``,
  and one over ``PREVIEW_CHARS`` shows up to the last space before them with the rest in a
  ``<details class="more-text">`` saying how many characters it holds), the source drawn with
  status and error, and the token counts (the stored one, in the run's budget encoder, and
  each encoder's, original / synthetic).
Every text from the data is HTML-escaped.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from html import escape
from pathlib import Path
from string import Template

import numpy as np

from caption.report_counts import HISTOGRAM_ROWS, Facts, Tally, is_empty, row_tokens, token_lengths
from curate.report.html import TEMPLATE as CURATION_TEMPLATE
from curate.report.plots import Threshold, stat_svg
from curate.report.text import pct, truncate
from curate.report.thumbnails import Gallery
from curate.schema import CAPTION_STATUS

TOP_ERRORS = 10
TOP_LANGS = 15
ERROR_CHARS = 200
CAPTION_CHARS = 2000
PREVIEW_CHARS = 320  # a longer caption shows this much, the rest behind a "more" toggle
VALUE_CHARS = 300
SECTIONS = [("run", "Run", "Run"), ("counts", "Counts", "Counts"), ("tokens", "Tokens", "Caption length in tokens"),
            ("languages", "Languages", "Languages"), ("failures", "Failures", "Failures"), ("samples", "Samples", "Samples")]
PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
$style
<style>
  table.settings td:first-child, table.counts td:first-child { padding-right: 24px; }
  table.samples { width: 100%; table-layout: fixed; }
  table.samples th.thumb { width: ${side}px; }
  table.samples th.source { width: 130px; }
  table.samples th.tokens { width: 190px; }
  table.samples td { word-break: break-word; }
  table.samples td img { display: block; max-width: 100%; height: auto; }
  div.caption-text { white-space: pre-wrap; }
  details.more-text { display: inline; }
  details.more-text summary { display: inline; cursor: pointer; color: #00798c; font-size: 12px; }
  details.more-text[open] summary { display: none; }
  details.more-text::details-content { display: inline; }
  th .note { font-weight: normal; font-size: 12px; display: block; }
  td .error { color: #a33; }
  td.tokens { font-variant-numeric: tabular-nums; font-size: 12px; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="muted">generated $generated</p>
<nav>$nav</nav>
$sections
</body>
</html>
""")


def _flatten(value: object, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))]


def _run_html(f: Facts) -> str:
    others = ", ".join(f"{v}{' (current)' if v == f.current else ''}" for v in f.versions if v != f.version)
    items = [("output", f.uri),
             ("captions version", f"{f.version}{' (current)' if f.version == f.current else ' (not the current one)'}"),
             ("stage", str(f.entry.get("stage", "?"))), ("created", str(f.entry.get("created", "?"))),
             ("other versions", others or "none")]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    body = "".join(f'<tr data-key="{escape(k)}"><td>{escape(k)}</td><td>{escape(truncate(str(v), VALUE_CHARS))}</td></tr>'
                   for k, v in _flatten(f.settings))
    table = (f'<table class="settings"><tbody>{body}</tbody></table>' if f.settings
             else '<p class="muted">this version recorded no settings</p>')
    return f'<dl class="run" data-version="{escape(f.version)}">{rows}</dl><h3>Settings</h3>{table}'


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _share(value: float | None, missing: str = "–") -> str:
    return missing if value is None else f"{value:.1%}"


def _counts_html(t: Tally, configured: float | None) -> str:
    synthetic = t.source_kept.get("synthetic", 0)
    realised = synthetic / t.kept if t.kept else None
    drawn = t.eligible_synthetic / t.eligible if t.eligible else None
    of_kept = {"ok": "captioned (status ok)", "caption_failed": "caption failed",
               "caption_empty": "caption empty after post-processing"}
    lines = [("rows", "rows", t.rows, ""), ("kept", "kept rows", t.kept, pct(t.kept, t.rows))]
    lines += [(s, label, t.status.get(s, 0), pct(t.status.get(s, 0), t.kept)) for s, label in of_kept.items()]
    lines += [
        ("not_kept", "not kept (not captioned)", t.status.get("not_kept", 0), pct(t.status.get("not_kept", 0), t.rows)),
        ("fallbacks", "fallbacks: kept, on the original caption because the synthetic failed or was empty",
         t.fallbacks, pct(t.fallbacks, t.kept)),
        ("synthetic_without_original", "kept rows without an original caption that use the synthetic one",
         t.synthetic_without_original, pct(t.synthetic_without_original, t.kept)),
        ("no_caption", "kept rows with no caption at all (no original, no synthetic drawn)", t.no_caption,
         pct(t.no_caption, t.kept)),
        ("synthetic", "kept rows training on the synthetic caption", synthetic, pct(synthetic, t.kept)),
    ]
    others = sorted(s for s in t.status if s not in CAPTION_STATUS)
    lines += [(f"status:{s}", f"status {s}", t.status[s], pct(t.status[s], t.rows)) for s in others]
    body = "".join(f'<tr data-count="{escape(key)}"><td>{escape(label)}</td><td class="n">{n:,}</td>'
                   f'<td class="n muted">{share}</td></tr>' for key, label, n, share in lines)
    mix = (f'<p class="mix" data-realised="{_ratio(realised)}" data-eligible="{_ratio(drawn)}" '
           f'data-configured="{_ratio(configured)}">Mix: synthetic share of kept rows <b>{_share(realised)}</b>; '
           f'of the {t.eligible:,} captioned kept rows with an original caption (those the mix draws among) '
           f'<b>{_share(drawn)}</b>; configured <b>{_share(configured, "not recorded")}</b>.</p>')
    return (f'<table class="counts"><thead><tr><th></th><th class="n">rows</th><th class="n">share</th></tr></thead>'
            f"<tbody>{body}</tbody></table>{mix}")


def _token_charts(f: Facts) -> str:
    lengths = token_lengths(f.histogram_rows, *f.budget)
    if not lengths or not (lengths[0].original.size or lengths[0].synthetic.size):
        return '<p class="muted">no kept row has a caption</p>'
    charts = []
    for e in lengths:
        values = np.concatenate([e.original, e.synthetic])
        groups = [("original", np.arange(values.size) < e.original.size)]
        groups.append(("synthetic", ~groups[0][1]))
        marks = [Threshold(float(e.room), f"{e.encoder} room: {e.room} of {e.limit}")]
        if e.budget is not None:
            marks.append(Threshold(float(e.budget[1]), f"budget room: {e.budget[1]} of {e.budget[0]:g}"))
        title = f"{e.encoder} tokens" + ("" if e.exact else " (estimate)")
        charts.append(f'<div class="hist" data-encoder="{escape(e.encoder)}" data-exact="{str(e.exact).lower()}">'
                      f"{stat_svg(title, values, groups, marks, overlay=True)}</div>")
    rows = len(f.histogram_rows)
    note = (f"A seeded sample of {rows:,} kept rows (at most {HISTOGRAM_ROWS:,})." if f.sampled
            else f"All {rows:,} kept rows.")
    return (f'<p class="muted">{note} Text tokens (special tokens not counted) of the original and the synthetic '
            f'captions, overlaid; dashed: the text room of the sequence; an estimate is not the encoder\'s own '
            f'tokenizer.</p><div class="charts">{"".join(charts)}</div>')


def _counter_table(counts: Counter, column: str, total: int, top: int) -> str:
    body = "".join(f'<tr data-value="{escape(v)}"><td>{escape(truncate(v, ERROR_CHARS))}</td><td class="n">{n:,}</td>'
                   f'<td class="n muted">{pct(n, total)}</td></tr>'
                   for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top])
    more = f'<p class="muted">{len(counts) - top:,} more values</p>' if len(counts) > top else ""
    return (f'<table data-column="{escape(column)}"><thead><tr><th>value</th><th class="n">rows</th><th class="n">share</th>'
            f"</tr></thead><tbody>{body}</tbody></table>{more}")


def _languages_html(t: Tally) -> str:
    if not t.langs:
        return '<p class="muted">no row was captioned</p>'
    first = _counter_table(t.langs, "caption_synthetic_lang", sum(t.langs.values()), TOP_LANGS)
    out = [f"<div><h3>caption_synthetic_lang</h3>{first}</div>"]
    if t.langs_2:
        out.append(f"<div><h3>caption_synthetic_2_lang</h3>"
                   f"{_counter_table(t.langs_2, 'caption_synthetic_2_lang', t.second, TOP_LANGS)}</div>")
    return f'<div class="columns">{"".join(out)}</div>'


def _failures_html(t: Tally) -> str:
    if not t.errors:
        return '<p class="muted">no caption_error in any row</p>'
    return f"<p>{sum(t.errors.values()):,} rows carry a caption_error.</p>" + _counter_table(
        t.errors, "caption_error", sum(t.errors.values()), TOP_ERRORS)


def _text_cell(text: str | None, css: str, lang: str | None = None) -> str:
    if is_empty(text):
        return f'<td class="{css}"><span class="muted">(none)</span></td>'
    tag = f' <span class="muted">[{escape(lang)}]</span>' if lang else ""
    text = truncate(text, CAPTION_CHARS)
    if len(text) <= PREVIEW_CHARS:
        return f'<td class="{css}"><div class="caption-text">{escape(text)}{tag}</div></td>'
    cut = text.rfind(" ", PREVIEW_CHARS // 2, PREVIEW_CHARS) + 1 or PREVIEW_CHARS
    return (f'<td class="{css}"><div class="caption-text">{escape(text[:cut])}<details class="more-text">'
            f'<summary>… {len(text) - cut:,} more characters</summary>{escape(text[cut:])}</details>{tag}</div></td>')


def _tokens_cell(row: dict, budget_encoder: object) -> str:
    lines = []
    if row.get("caption_synthetic_tokens") is not None:
        under = f" ({budget_encoder})" if isinstance(budget_encoder, str) else ""
        lines.append(f"stored{under}: {row['caption_synthetic_tokens']:,}")
    for encoder, exact, original, synthetic in row_tokens(row):
        mark = "" if exact else "~"
        shown = [f"{mark}{n}" if n is not None else "–" for n in (original, synthetic)]
        lines.append(f"{encoder}: {shown[0]} / {shown[1]}")
    return f'<td class="tokens">{"<br>".join(escape(x) for x in lines)}</td>'


def _thumb_cell(thumb) -> str:
    if thumb.uri is None:
        return f'<td class="thumb"><div class="placeholder">{escape(thumb.why or "")}</div></td>'
    w, h = thumb.size
    return f'<td class="thumb"><img src="{thumb.uri}" width="{w}" height="{h}" alt=""></td>'


def _samples_html(f: Facts, gallery: Gallery) -> str:
    rows, kept = f.shown, f.tally.kept
    if not rows:
        return f'<p class="muted">no samples: {kept:,} kept rows, samples asked for none or there are none</p>'
    second = any(not is_empty(r.get("caption_synthetic_2")) for r in rows)
    head = ('<th class="thumb">image</th><th>original</th><th>synthetic</th>' + ("<th>second</th>" if second else "")
            + '<th class="source">source drawn</th>'
            + '<th class="tokens">tokens<span class="muted note">original / synthetic; ~ an estimate</span></th>')
    body = []
    for r in rows:
        status = r.get("caption_status") or "(none)"
        source = f'{escape(r.get("caption_source") or "(none)")}<br><span class="muted">{escape(status)}</span>'
        if r.get("caption_error"):
            source += f'<br><span class="error">{escape(truncate(r["caption_error"], ERROR_CHARS))}</span>'
        cells = [_thumb_cell(gallery.thumb(r)), _text_cell(r.get("caption"), "original"),
                 _text_cell(r.get("caption_synthetic"), "synthetic", r.get("caption_synthetic_lang"))]
        if second:
            cells.append(_text_cell(r.get("caption_synthetic_2"), "second", r.get("caption_synthetic_2_lang")))
        cells += [f'<td class="source">{source}</td>', _tokens_cell(r, f.budget[0])]
        body.append(f'<tr data-row-key="{int(r["row_key"])}" data-id="{escape(r.get("id") or "")}">{"".join(cells)}</tr>')
    return (f'<p class="muted">{len(rows):,} of {kept:,} kept rows, a seeded draw.</p>'
            f'<table class="samples"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _style(side: int) -> str:
    """The curation report's ``<style>`` block, with its thumbnail side."""
    found = re.search(r"<style>.*?</style>", CURATION_TEMPLATE.read_text(encoding="utf-8"), re.S)
    return Template(found.group(0)).safe_substitute(side=side) if found else ""


def page(f: Facts, gallery: Gallery, generated: str, side: int) -> str:
    """The whole page; ``side`` is the thumbnails' longest side in pixels."""
    bodies = {"run": _run_html(f), "counts": _counts_html(f.tally, f.configured_ratio), "tokens": _token_charts(f),
              "languages": _languages_html(f.tally), "failures": _failures_html(f.tally),
              "samples": _samples_html(f, gallery)}
    return PAGE.substitute(
        title=escape(f"refinery caption report — {Path(f.uri).name or f.uri}"), generated=generated,
        style=_style(side), side=side,
        nav="".join(f'<a href="#{key}">{escape(label)}</a>' for key, label, _ in SECTIONS),
        sections="\n".join(f'<section id="{key}"><h2>{escape(title)}</h2>{bodies[key]}</section>'
                           for key, _, title in SECTIONS),
    )
