"""The caption report: what a ``refinery caption`` run wrote, on one self-contained HTML page.

Contract: ``write_report(uri, version=None, out_path=None, samples=24, seed=0) -> str`` reads the
output at ``uri`` through the one reader (``curate.open``; ``versions={"captions": version}``,
default the current captions version; an output without that version is a one-line
``OutputError``), writes the page to ``out_path`` (a local path) or by default to
``caption-report.html`` at the output's root through its store (``s3://`` too), and returns
the path written. Like the curation report the file stands alone: charts are inline SVG
(``curate.report.plots.stat_svg``), thumbnails JPEG ``data:`` URIs
(``curate.report.thumbnails.Gallery``), the style is the curation report's.
Sections, each an anchored ``<section id=...>``:
- ``run``: the output, the captions version shown, its stage and creation time, the other
  versions, and the version's manifest ``settings`` flattened to a key/value table
  (``a.b`` for nested mappings: whatever the captioner recorded);
- ``counts`` (every row; ``data-count`` attributes for tools): rows, kept, captioned (status
  ``ok``), ``caption_failed``, ``caption_empty``, ``not_kept``, fallbacks (kept rows on the
  original caption because the synthetic failed or came back empty), kept rows without an
  original caption that use the synthetic one, kept rows left with no caption at all, and the
  realised mix ratio (synthetic share of kept rows, and of the captioned kept rows with an
  original caption, the ones the mix draws among) beside the configured one (setting
  ``mix.ratio`` or ``mix_ratio``);
- ``tokens``: per encoder of ``caption.config.ENCODER_BUDGETS`` a histogram of the original
  and the synthetic caption lengths of kept rows in text tokens (``caption.tokens.count``; at
  most ``HISTOGRAM_ROWS`` rows, a seeded sample, said on the page), the text room of the
  encoder's sequence (and of a smaller ``budget`` of that encoder;
  ``tokens.budget_text_tokens``) dashed; an encoder ``caption.tokens.EXACT`` marks inexact is
  titled ``(estimate)``;
- ``languages``: the counts of ``caption_synthetic_lang`` and, when any row has one, of
  ``caption_synthetic_2_lang``;
- ``failures``: the ``TOP_ERRORS`` most frequent ``caption_error`` messages, truncated, with counts;
- ``samples``: ``samples`` kept rows drawn with ``numpy.random.default_rng(seed)``, in
  ``row_key`` order, side by side: thumbnail, original caption, synthetic caption (and the
  second one when present), the source drawn, the stored token count and each encoder's count.
Every text from the data is HTML-escaped.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from string import Template

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import curate
from caption import tokens
from caption.config import ENCODER_BUDGETS
from curate.config import DecodeConfig
from curate.fetch import FETCH_COLUMNS, image_bytes
from curate.layout import OutputError
from curate.readers import ReadError
from curate.report.html import TEMPLATE as CURATION_TEMPLATE
from curate.report.plots import Threshold, stat_svg
from curate.report.text import pct, truncate
from curate.report.thumbnails import Gallery
from curate.schema import CAPTION_STATUS, make_row_key

GROUP = "captions"
REPORT_NAME = "caption-report.html"
HISTOGRAM_ROWS = 5000  # kept rows whose token counts are histogrammed (a seeded sample beyond)
TOP_ERRORS = 10
TOP_LANGS = 15
THUMB_SIDE = 192
ERROR_CHARS = 200
CAPTION_CHARS = 2000
VALUE_CHARS = 300
TALLY_COLUMNS = ["row_key", "keep", "caption", "caption_source", "caption_status", "caption_error",
                 "caption_synthetic_lang", "caption_synthetic_2", "caption_synthetic_2_lang"]
TEXT_COLUMNS = ["row_key", "caption", "caption_synthetic"]
SAMPLE_COLUMNS = list(dict.fromkeys([
    *FETCH_COLUMNS, "width", "height", "keep", "reasons", "caption", "caption_synthetic", "caption_synthetic_model",
    "caption_synthetic_prompt", "caption_synthetic_lang", "caption_synthetic_tokens", "caption_synthetic_seconds",
    "caption_synthetic_2", "caption_synthetic_2_prompt", "caption_synthetic_2_lang", "caption_source",
    "caption_status", "caption_error"]))
PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
$style
<style>
  table.samples td { max-width: 360px; word-break: break-word; }
  table.samples td.thumb { width: ${side}px; }
  td.caption-text { white-space: pre-wrap; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="muted">generated $generated</p>
<nav><a href="#run">Run</a><a href="#counts">Counts</a><a href="#tokens">Tokens</a><a href="#languages">Languages</a>
<a href="#failures">Failures</a><a href="#samples">Samples</a></nav>
<section id="run"><h2>Run</h2>$run</section>
<section id="counts"><h2>Counts</h2>$counts</section>
<section id="tokens"><h2>Caption length in tokens</h2>$tokens</section>
<section id="languages"><h2>Languages</h2>$languages</section>
<section id="failures"><h2>Failures</h2>$failures</section>
<section id="samples"><h2>Samples</h2>$samples</section>
</body>
</html>
""")


def _is_empty(text: str | None) -> bool:
    return text is None or not text.strip()


@dataclass
class Tally:
    """Counts over every row of the output (pass one)."""
    rows: int = 0
    kept: int = 0
    status: Counter = field(default_factory=Counter)
    source_kept: Counter = field(default_factory=Counter)
    fallbacks: int = 0
    synthetic_without_original: int = 0
    no_caption: int = 0
    eligible: int = 0  # kept, captioned, with an original caption: the rows the mix draws among
    eligible_synthetic: int = 0
    langs: Counter = field(default_factory=Counter)
    langs_2: Counter = field(default_factory=Counter)
    second: int = 0
    errors: Counter = field(default_factory=Counter)
    kept_keys: list[np.ndarray] = field(default_factory=list)

    def add(self, t: pa.Table) -> None:
        self.rows += t.num_rows
        keep = pc.fill_null(t.column("keep"), False).to_numpy(zero_copy_only=False)
        self.kept += int(keep.sum())
        self.kept_keys.append(t.column("row_key").to_numpy()[keep])
        cols = {c: t.column(c).to_pylist() for c in TALLY_COLUMNS[2:]}
        for i, kept in enumerate(keep):
            status, source = cols["caption_status"][i], cols["caption_source"][i]
            self.status[status or "(none)"] += 1
            if cols["caption_error"][i]:
                self.errors[cols["caption_error"][i]] += 1
            if status == "ok":
                self.langs[cols["caption_synthetic_lang"][i] or "(none)"] += 1
            if not _is_empty(cols["caption_synthetic_2"][i]):
                self.second += 1
                self.langs_2[cols["caption_synthetic_2_lang"][i] or "(none)"] += 1
            if not kept:
                continue
            self.source_kept[source or "(none)"] += 1
            no_original = _is_empty(cols["caption"][i])
            if source == "original" and status in ("caption_failed", "caption_empty"):
                self.fallbacks += 1
            if source == "synthetic" and no_original:
                self.synthetic_without_original += 1
            if no_original and source != "synthetic":
                self.no_caption += 1
            if status == "ok" and not no_original:
                self.eligible += 1
                self.eligible_synthetic += source == "synthetic"

    def keys(self) -> np.ndarray:
        return np.sort(np.concatenate(self.kept_keys)) if self.kept_keys else np.zeros(0, np.int64)


def _flatten(value: object, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))]


def _setting(settings: dict, *names: str) -> object:
    """The first of ``names`` (dotted paths) found in ``settings``, else None."""
    for name in names:
        value: object = settings
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _choose(keys: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n <= 0:
        return keys[:0]
    if n >= keys.size:
        return keys
    return np.sort(np.random.default_rng(seed).choice(keys, size=n, replace=False))


def _unit_slices(output, wanted: np.ndarray):
    """(unit, the keys of ``wanted`` inside it) for every unit holding one."""
    for unit in output.units:
        lo = make_row_key(unit.partition, unit.start)
        inside = wanted[(wanted >= lo) & (wanted < lo + unit.rows)]
        if inside.size:
            yield unit, inside


def _read_rows(output, wanted: np.ndarray, columns: list[str], versions: dict) -> list[dict]:
    rows = []
    for unit, keys in _unit_slices(output, wanted):
        t = output.read_unit(unit, columns, versions=versions)
        rows.extend(t.filter(pc.is_in(t.column("row_key"), pa.array(keys, pa.int64()))).to_pylist())
    return rows


# -- sections --------------------------------------------------------------------------


def _kv_table(items: list[tuple[str, str]], css: str) -> str:
    body = "".join(f'<tr data-key="{escape(k)}"><td>{escape(k)}</td><td>{escape(truncate(str(v), VALUE_CHARS))}</td></tr>'
                   for k, v in items)
    return f'<table class="{css}"><tbody>{body}</tbody></table>'


def _run_html(output, version: str, entry: dict) -> str:
    versions = output.manifest["groups"][GROUP]
    current = output.groups.get(GROUP)
    others = ", ".join(f"{v}{' (current)' if v == current else ''}" for v in sorted(versions) if v != version)
    items = [("output", output.uri),
             ("captions version", f"{version}{' (current)' if version == current else ' (not the current one)'}"),
             ("stage", str(entry.get("stage", "?"))), ("created", str(entry.get("created", "?"))),
             ("other versions", others or "none")]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    settings = entry.get("settings") if isinstance(entry.get("settings"), dict) else {}
    table = (_kv_table(_flatten(settings), "settings") if settings
             else '<p class="muted">this version recorded no settings</p>')
    return f'<dl class="run" data-version="{escape(version)}">{rows}</dl><h3>Settings</h3>{table}'


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _share(value: float | None, missing: str = "–") -> str:
    return missing if value is None else f"{value:.1%}"


def _counts_html(t: Tally, configured: float | None) -> str:
    synthetic = t.source_kept.get("synthetic", 0)
    realised = synthetic / t.kept if t.kept else None
    drawn = t.eligible_synthetic / t.eligible if t.eligible else None
    lines = [
        ("rows", "rows", t.rows, ""),
        ("kept", "kept rows", t.kept, pct(t.kept, t.rows)),
        ("ok", "captioned (status ok)", t.status.get("ok", 0), pct(t.status.get("ok", 0), t.kept)),
        ("caption_failed", "caption failed", t.status.get("caption_failed", 0), pct(t.status.get("caption_failed", 0), t.kept)),
        ("caption_empty", "caption empty after post-processing", t.status.get("caption_empty", 0),
         pct(t.status.get("caption_empty", 0), t.kept)),
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


def _token_charts(rows: list[dict], settings: dict, sampled: bool) -> str:
    originals = [r["caption"] for r in rows if not _is_empty(r["caption"])]
    synthetics = [r["caption_synthetic"] for r in rows if not _is_empty(r["caption_synthetic"])]
    if not originals and not synthetics:
        return '<p class="muted">no kept row has a caption</p>'
    budget_encoder, budget = _setting(settings, "budget.encoder"), _number(_setting(settings, "budget.limit", "budget.tokens"))
    groups = [("original", np.arange(len(originals) + len(synthetics)) < len(originals))]
    groups.append(("synthetic", ~groups[0][1]))
    charts = []
    for encoder, limit in ENCODER_BUDGETS.items():
        exact = bool(tokens.EXACT.get(encoder, False))
        values = np.array([tokens.count(text, encoder) for text in [*originals, *synthetics]], dtype=np.float64)
        room = tokens.budget_text_tokens(encoder, limit)
        marks = [Threshold(float(room), f"{encoder} room: {room} of {limit}")]
        if budget_encoder == encoder and budget is not None and budget != limit:
            fits = tokens.budget_text_tokens(encoder, int(budget))
            marks.append(Threshold(float(fits), f"budget room: {fits} of {budget:g}"))
        title = f"{encoder} tokens" + ("" if exact else " (estimate)")
        charts.append(f'<div class="hist" data-encoder="{escape(encoder)}" data-exact="{str(exact).lower()}">'
                      f"{stat_svg(title, values, groups, marks)}</div>")
    note = (f'<p class="muted">A seeded sample of {len(rows):,} kept rows (at most {HISTOGRAM_ROWS:,}).</p>' if sampled
            else f'<p class="muted">All {len(rows):,} kept rows.</p>')
    return (f'{note}<p class="muted">Text tokens (special tokens not counted), original and synthetic captions '
            f'stacked; dashed: the text room of the sequence; an estimate is not the encoder\'s own tokenizer.</p>'
            f'<div class="charts">{"".join(charts)}</div>')


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
    if _is_empty(text):
        return f'<td class="{css}"><span class="muted">(none)</span></td>'
    tag = f' <span class="muted">[{escape(lang)}]</span>' if lang else ""
    return f'<td class="{css} caption-text">{escape(truncate(text, CAPTION_CHARS))}{tag}</td>'


def _tokens_cell(row: dict) -> str:
    lines = []
    if row.get("caption_synthetic_tokens") is not None:
        lines.append(f"stored: {row['caption_synthetic_tokens']:,}")
    for encoder in ENCODER_BUDGETS:
        mark = "" if tokens.EXACT.get(encoder, False) else "~"
        counts = [f"{mark}{tokens.count(row[c], encoder)}" if not _is_empty(row.get(c)) else "–"
                  for c in ("caption", "caption_synthetic")]
        lines.append(f"{encoder}: {counts[0]} / {counts[1]}")
    return f'<td class="tokens" title="original / synthetic; ~ an estimate">{"<br>".join(escape(x) for x in lines)}</td>'


def _thumb_cell(thumb) -> str:
    if thumb.uri is None:
        return f'<td class="thumb"><div class="placeholder">{escape(thumb.why or "")}</div></td>'
    w, h = thumb.size
    return f'<td class="thumb"><img src="{thumb.uri}" width="{w}" height="{h}" alt=""></td>'


def _samples_html(rows: list[dict], gallery: Gallery, kept: int) -> str:
    if not rows:
        return f'<p class="muted">no samples: {kept:,} kept rows, samples asked for none or there are none</p>'
    second = any(not _is_empty(r.get("caption_synthetic_2")) for r in rows)
    head = "<th>image</th><th>original</th><th>synthetic</th>" + ("<th>second</th>" if second else "") + \
           "<th>source drawn</th><th>tokens</th>"
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
        cells += [f'<td class="source">{source}</td>', _tokens_cell(r)]
        body.append(f'<tr data-row-key="{int(r["row_key"])}" data-id="{escape(r.get("id") or "")}">{"".join(cells)}</tr>')
    return (f'<p class="muted">{len(rows):,} of {kept:,} kept rows, a seeded draw.</p>'
            f'<table class="samples"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


# -- the page --------------------------------------------------------------------------


def _style(side: int) -> str:
    """The curation report's ``<style>`` block, with its thumbnail side."""
    found = re.search(r"<style>.*?</style>", CURATION_TEMPLATE.read_text(encoding="utf-8"), re.S)
    return Template(found.group(0)).safe_substitute(side=side) if found else ""


def _decode_config(manifest: dict) -> DecodeConfig:
    try:
        return DecodeConfig.model_validate((manifest.get("measured_with") or {}).get("decode") or {})
    except ValueError:
        return DecodeConfig()


def _fetcher(output):
    def fetch(row: dict) -> bytes | None:
        if row.get("image") is not None:
            return row["image"]
        try:
            return image_bytes(output, row)
        except (ReadError, OSError):
            return None
    return fetch


def _version_of(output, version: str | None) -> tuple[str, dict]:
    versions = output.manifest["groups"].get(GROUP) or {}
    if not versions:
        raise OutputError(f"{output.uri} has no captions group: run `refinery caption run` on it first")
    name = version if version is not None else output.groups.get(GROUP)
    if name not in versions:
        raise OutputError(f"{output.uri} has no captions version {name!r}; it has {sorted(versions)}")
    return name, versions[name]


def render(uri: str, version: str | None = None, samples: int = 24, seed: int = 0) -> str:
    """The report page's HTML (``write_report`` without the writing)."""
    output = curate.open(uri)
    name, entry = _version_of(output, version)
    versions = {GROUP: name}
    settings = entry.get("settings") if isinstance(entry.get("settings"), dict) else {}
    tally = Tally()
    for table in output.iter_tables(TALLY_COLUMNS, versions=versions):
        tally.add(table)
    kept_keys = tally.keys()
    hist_keys = _choose(kept_keys, HISTOGRAM_ROWS, seed)
    shown_keys = _choose(kept_keys, samples, seed)
    shown = _read_rows(output, shown_keys, SAMPLE_COLUMNS, versions)
    gallery = Gallery(_fetcher(output), _decode_config(output.manifest), THUMB_SIDE)
    gallery.add(shown)
    gallery.render()
    configured = _number(_setting(settings, "mix.ratio", "mix_ratio"))
    return PAGE.substitute(
        title=escape(f"refinery caption report — {Path(output.uri).name or output.uri}"),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        style=_style(THUMB_SIDE), side=THUMB_SIDE,
        run=_run_html(output, name, entry),
        counts=_counts_html(tally, configured),
        tokens=_token_charts(_read_rows(output, hist_keys, TEXT_COLUMNS, versions), settings,
                             hist_keys.size < kept_keys.size),
        languages=_languages_html(tally),
        failures=_failures_html(tally),
        samples=_samples_html(shown, gallery, tally.kept),
    )


def write_report(uri: str, version: str | None = None, out_path: str | None = None, samples: int = 24,
                 seed: int = 0) -> str:
    page = render(uri, version, samples, seed).encode("utf-8")
    if out_path is None:
        store = curate.open(uri).store
        store.write_bytes(REPORT_NAME, page)
        return str(store.local_root / REPORT_NAME) if store.is_local else store.display(REPORT_NAME)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(page)
    os.replace(partial, path)
    return str(path)
