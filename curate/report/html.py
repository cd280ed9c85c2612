"""The HTML run report a data engineer opens after a curation run, to tune the thresholds.

Contract: ``write_report(out_dir, table, config, fetch_image, funnel=None, manifest=None,
diff=None)`` writes ``out_dir/report.html`` and returns its path. The file is self-contained:
every chart is inline SVG (``plots``) and every thumbnail a JPEG ``data:`` URI, so the one
file can be copied anywhere; an ``out_dir/report/`` asset folder left by an older report is removed.
``table`` holds the rows the report shows, kept and rejected, in the refinery schema
(``image`` may be absent or null); ``funnel`` the exact counts of the whole output when
``table`` is a sample of it; ``manifest`` the manifest being committed (the run header);
``diff`` the merged ``curate.report.diff`` of a retune (``None``: a first run).
Sections, each an anchored ``<section id=...>`` linked from the top: the run header
(``header``); totals; the funnel as a table (each step with rows linking to its reason's page) and
a bar chart; the difference to the previous generation (``diff_html``); the rules; the model
stages (``models_html``: what ran, the cascade's counts, what is off and how to enable it); rows just
below and above each threshold (``thresholds``); duplicate clusters beside their keeper
(``duplicates``); one histogram per numeric stat column with a value (hash and label columns
skipped), kept vs rejected, with the thresholds, then one per model stat (``MODEL_STAT_COLUMNS``)
with a value, drawn the same way; caption statistics (``captions``; the
``stat_caption_*`` histograms go there, or one of the caption text's length when the caption
filters did not run, and the label columns' values); a page per reason
and for kept rows (``samples``; the detected face and text boxes drawn on every thumbnail
that has them, the recognised text under those of ``models_html.text_reasons``). Thumbnails
are capped by ``config.report``: each section shows at most ``thumbnails_per_reason`` rows
per item (a reason's page up to ``samples.PAGE_FACTOR`` times that), and a row shown in
several sections is rendered once.
Every text from the data is HTML-escaped.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from string import Template
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig
from curate.reasons import DESCRIPTIONS
from curate.report.captions import caption_html, caption_stats, label_counts
from curate.report.diff_html import diff_examples, diff_html
from curate.report.duplicates import clusters_html, pick_clusters
from curate.report.funnel import KEPT, ROWS_IN, first_steps, funnel_rows, funnel_steps, reason_pairs
from curate.report.header import header_html
from curate.report.models_html import MODELS, group_entry, model_stages_html, text_reasons
from curate.report.plots import Threshold, funnel_svg, stat_svg
from curate.report.samples import pick_samples, samples_html
from curate.report.text import anchor, fmt, pct
from curate.report.thresholds import marks_html, pick_marks
from curate.report.thumbnails import Gallery
from curate.schema import HASH_COLUMNS, LABEL_COLUMNS, MODEL_STAT_COLUMNS, STAT_COLUMNS, conform

TEMPLATE = Path(__file__).with_name("report.html")
CAPTION_STATS = "stat_caption_"  # plotted in the captions section, not with the image stats
OLD_ASSETS = "report"  # the asset folder of reports that did not inline their images


def histogram_columns(table: pa.Table, columns: list[str] = STAT_COLUMNS) -> list[str]:
    """Of ``columns`` (default: the CPU stats), those with a non-null value, hash and label columns excluded, in order."""
    names = [c for c in columns if c not in HASH_COLUMNS and c not in LABEL_COLUMNS and c in table.column_names]
    return [c for c in names if table.column(c).null_count < table.num_rows]


def _summary_html(rows: list[tuple[str, int]]) -> str:
    total, kept = rows[0][1], rows[-1][1]
    rejected = total - kept
    cards = [("rows in", total, ""), ("kept", kept, pct(kept, total)), ("rejected", rejected, pct(rejected, total))]
    body = "".join(
        f'<div class="card"><span class="n">{n:,}</span>{escape(label)} <span class="muted">{share}</span></div>'
        for label, n, share in cards
    )
    return f'<div class="cards">{body}</div>'


def _rows_link(name: str, linked: set[str]) -> str:
    return f'<td><a href="#{anchor(name)}">rows</a></td>' if name in linked else "<td></td>"


def _funnel_html(rows: list[tuple[str, int]], linked: set[str]) -> str:
    """``linked``: the steps with a page of rows, linked from the last column."""
    total = rows[0][1]
    out = [
        '<table class="funnel"><thead><tr><th>step</th><th>meaning</th><th class="n">removed</th>'
        '<th class="n">% of rows in</th><th class="n">remaining</th><th></th></tr></thead><tbody>'
    ]
    remaining = total
    for name, n in rows:
        step, link = f'data-step="{escape(name)}"><td>{escape(name)}</td>', _rows_link(name, linked)
        if name == ROWS_IN:
            out.append(f'<tr class="total" {step}<td>rows read</td><td class="n">{n:,}</td><td class="n"></td>'
                       f'<td class="n">{n:,}</td>{link}</tr>')
            continue
        if name == KEPT:
            out.append(f'<tr class="total" {step}<td>rows with no reason</td><td class="n">{n:,}</td>'
                       f'<td class="n">{pct(n, total)}</td><td class="n"></td>{link}</tr>')
            continue
        remaining -= n
        css = ' class="zero"' if n == 0 else ""
        meaning = DESCRIPTIONS.get(name, "not a known reason code")
        out.append(f'<tr{css} {step}<td>{escape(meaning)}</td><td class="n">{n:,}</td><td class="n">{pct(n, total)}</td>'
                   f'<td class="n">{remaining:,}</td>{link}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _rules_html(config: CurateConfig) -> str:
    if not config.rules:
        rules = '<p class="muted">no rules in this config</p>'
    else:
        body = "".join(
            f"<tr><td>{escape(r.column)}</td><td class=\"n\">{fmt(r.min)}</td><td class=\"n\">{fmt(r.max)}</td>"
            f"<td>{escape(', '.join(r.values or []))}</td>"
            f"<td>{escape(str(r.reason))}</td><td>{escape(DESCRIPTIONS.get(r.reason, ''))}</td></tr>"
            for r in config.rules
        )
        rules = (
            '<table><thead><tr><th>column</th><th class="n">min</th><th class="n">max</th><th>values that pass</th><th>reason</th>'
            f"<th>meaning</th></tr></thead><tbody>{body}</tbody></table>"
        )
    d = config.dedup
    dedup = (
        f'<p>Dedup: exact {"on" if d.exact else "off"}; near {"on" if d.near else "off"}'
        f'{f" (pHash radius {d.radius} of 64 bits)" if d.near else ""}.</p>'
    )
    return rules + dedup


def _histograms(table: pa.Table, config: CurateConfig, kept: np.ndarray, carrying: dict[str, np.ndarray],
                columns: list[str]) -> str:
    """Plot each of ``columns`` with values; ``carrying[reason]`` = rows holding that reason."""
    images = []
    for column in columns:
        values = pc.cast(table.column(column), pa.float64()).to_numpy(zero_copy_only=False)
        if not np.isfinite(values).any():
            continue
        rules = [r for r in config.rules if r.column == column]
        thresholds = [Threshold(r.min, f"{r.reason}: min {r.min:g}") for r in rules if r.min is not None]
        thresholds += [Threshold(r.max, f"{r.reason}: max {r.max:g}") for r in rules if r.max is not None]
        reasons = list(dict.fromkeys(str(r.reason) for r in rules))
        if reasons:
            by_rule = np.zeros(table.num_rows, dtype=bool)
            for reason in reasons:
                by_rule[carrying.get(reason, [])] = True
            groups = [("kept", kept), (f"rejected: {', '.join(reasons)}", ~kept & by_rule), ("rejected: other", ~kept & ~by_rule)]
        else:
            groups = [("kept", kept), ("rejected", ~kept)]
        images.append(stat_svg(column, values, groups, thresholds))
    return "\n".join(images)


def _model_histograms(charts: str, manifest: dict | None) -> str:
    if charts:
        return f'<h3 id="model-statistics">Model stages</h3><div class="charts">{charts}</div>'
    if group_entry(manifest, MODELS) is not None:
        return '<p class="muted">no model statistic has a value in these rows</p>'
    return ""


def _sample_note(shown: int, total: int) -> str:
    if shown >= total:
        return ""
    return (f'<p class="muted">Histograms, thumbnails and caption statistics show a deterministic sample of '
            f"{shown:,} of {total:,} rows (report.max_rows); the funnel and the retune difference are exact.</p>")


def _remove_old_assets(out_dir: Path) -> None:
    old = out_dir / OLD_ASSETS
    if old.is_dir() and all(p.suffix in (".png", ".jpg") for p in old.rglob("*") if p.is_file()):
        shutil.rmtree(old)


def write_report(
    out_dir: str | Path,
    table: pa.Table,
    config: CurateConfig,
    fetch_image: Callable[[dict], bytes | None],
    funnel: list[tuple[str, int]] | None = None,
    manifest: dict | None = None,
    diff: dict | None = None,
) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = conform(table)
    per = config.report.thumbnails_per_reason

    steps = funnel_steps(table, config)
    first = first_steps(table, steps)
    rows = funnel if funnel is not None else funnel_rows(steps, first)
    parents, codes, names = reason_pairs(table)
    carrying = {names[c]: np.unique(parents[codes == c]) for c in np.unique(codes)}
    kept = first < 0

    pages = pick_samples(table, steps, first, carrying, per)
    marks = pick_marks(table, config, per)
    clusters, n_clusters, n_copies = pick_clusters(table, per)
    gallery = Gallery(fetch_image, config.decode, config.report.thumbnail_side)
    for cluster in clusters:
        gallery.add([cluster.keeper] if cluster.keeper else [])
        gallery.add(cluster.copies)
    gallery.add([row for m in marks for row, _ in m.below + m.above])
    gallery.add(diff_examples(diff, per))
    gallery.add([row for page in pages for row in page.rows])
    gallery.render()

    captions = caption_stats(table)
    plotted = histogram_columns(table)
    caption_columns = [c for c in plotted if c.startswith(CAPTION_STATS)]
    caption_charts = _histograms(table, config, kept, carrying, caption_columns)
    if not caption_columns and np.isfinite(captions.chars).any():  # not measured by the caption filters: from the text
        caption_charts = stat_svg("caption length (characters)", captions.chars, [("kept", kept), ("rejected", ~kept)], [])
    histograms = _histograms(table, config, kept, carrying, [c for c in plotted if c not in caption_columns])
    model_charts = _histograms(table, config, kept, carrying, histogram_columns(table, MODEL_STAT_COLUMNS))
    sampled = table.num_rows < rows[0][1]
    page = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=escape(f"refinery curation report — {out_dir.resolve().name}"),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        side=config.report.thumbnail_side,
        per_reason=per,
        header=header_html(manifest, config),
        summary=_summary_html(rows) + _sample_note(table.num_rows, rows[0][1]),
        funnel_table=_funnel_html(rows, {p.name for p in pages}),
        funnel_chart=funnel_svg(rows),
        diff=diff_html(diff, steps, config, gallery, per),
        rules=_rules_html(config),
        models=model_stages_html(manifest, table),
        thresholds=marks_html(marks, gallery, sampled, per > 0),
        duplicates=clusters_html(clusters, n_clusters, n_copies, gallery, config.dedup.keeper),
        histograms=histograms or '<p class="muted">no statistics in this table</p>',
        model_histograms=_model_histograms(model_charts, manifest),
        captions=caption_html(captions, caption_charts, label_counts(table, config)),
        samples=samples_html(pages, gallery, per, text_reasons(config)),
    )
    path = out_dir / "report.html"
    partial = out_dir / ".report.html.partial"
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    _remove_old_assets(out_dir)
    return path
