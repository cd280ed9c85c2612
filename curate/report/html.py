"""The HTML run report a data engineer opens after a curation run.

Contract: ``write_report(out_dir, table, config, fetch_image)`` writes ``out_dir/report.html``
and its assets under ``out_dir/report/`` (``funnel.png``, ``hist_<stat>.png``,
``thumbs/*.jpg``) and returns the html path. ``table`` holds every row of the run, kept and
rejected, in the refinery schema (``image`` may be absent or null). The page shows: totals;
the funnel (``curate.report.funnel``) as a table and a bar chart; the rules; one histogram per
stat column with any value (hash columns skipped), kept vs rejected, with rule thresholds;
thumbnails per reason and of kept rows (``curate.report.samples``). Every text from the
data is HTML-escaped; every link is relative, so the folder can be moved or served.
Assets from an earlier report in the same folder are replaced, never left stale.
"""
from __future__ import annotations

import os
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
from curate.report.funnel import KEPT, ROWS_IN, first_steps, funnel_rows, funnel_steps, reason_pairs
from curate.report.plots import Threshold, plot_funnel, plot_stat
from curate.report.samples import samples_html
from curate.report.text import fmt, pct
from curate.schema import HASH_COLUMNS, STAT_COLUMNS, conform

TEMPLATE = Path(__file__).with_name("report.html")
ASSETS = "report"  # folder next to report.html
THUMBS = "thumbs"


def histogram_columns(table: pa.Table) -> list[str]:
    """Stat columns with at least one non-null value, hash columns excluded, schema order."""
    names = [c for c in STAT_COLUMNS if c not in HASH_COLUMNS and c in table.column_names]
    return [c for c in names if table.column(c).null_count < table.num_rows]


def _clear_assets(assets: Path) -> None:
    for old in [*assets.glob("funnel.png"), *assets.glob("hist_*.png"), *(assets / THUMBS).glob("*.jpg")]:
        old.unlink()


def _summary_html(rows: list[tuple[str, int]]) -> str:
    total, kept = rows[0][1], rows[-1][1]
    rejected = total - kept
    cards = [("rows in", total, ""), ("kept", kept, pct(kept, total)), ("rejected", rejected, pct(rejected, total))]
    body = "".join(
        f'<div class="card"><span class="n">{n:,}</span>{escape(label)} <span class="muted">{share}</span></div>'
        for label, n, share in cards
    )
    return f'<div class="cards">{body}</div>'


def _funnel_html(rows: list[tuple[str, int]]) -> str:
    total = rows[0][1]
    out = [
        '<table class="funnel"><thead><tr><th>step</th><th>meaning</th><th class="n">removed</th>'
        '<th class="n">% of rows in</th><th class="n">remaining</th></tr></thead><tbody>'
    ]
    remaining = total
    for name, n in rows:
        meaning = DESCRIPTIONS.get(name, "not a known reason code")
        if name == ROWS_IN:
            out.append(
                f'<tr class="total" data-step="{escape(name)}"><td>{escape(name)}</td><td>rows read</td>'
                f'<td class="n">{n:,}</td><td class="n"></td><td class="n">{n:,}</td></tr>'
            )
            continue
        if name == KEPT:
            out.append(
                f'<tr class="total" data-step="{escape(name)}"><td>{escape(name)}</td><td>rows with no reason</td>'
                f'<td class="n">{n:,}</td><td class="n">{pct(n, total)}</td><td class="n"></td></tr>'
            )
            continue
        remaining -= n
        css = ' class="zero"' if n == 0 else ""
        out.append(
            f'<tr{css} data-step="{escape(name)}"><td>{escape(name)}</td><td>{escape(meaning)}</td>'
            f'<td class="n">{n:,}</td><td class="n">{pct(n, total)}</td><td class="n">{remaining:,}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _rules_html(config: CurateConfig) -> str:
    if not config.rules:
        rules = '<p class="muted">no rules in this config</p>'
    else:
        body = "".join(
            f"<tr><td>{escape(r.column)}</td><td class=\"n\">{fmt(r.min)}</td><td class=\"n\">{fmt(r.max)}</td>"
            f"<td>{escape(str(r.reason))}</td><td>{escape(DESCRIPTIONS.get(r.reason, ''))}</td></tr>"
            for r in config.rules
        )
        rules = (
            '<table><thead><tr><th>column</th><th class="n">min</th><th class="n">max</th><th>reason</th>'
            f"<th>meaning</th></tr></thead><tbody>{body}</tbody></table>"
        )
    d = config.dedup
    dedup = (
        f'<p>Dedup: exact {"on" if d.exact else "off"}; near {"on" if d.near else "off"}'
        f'{f" (pHash radius {d.radius} of 64 bits)" if d.near else ""}.</p>'
    )
    return rules + dedup


def _write_histograms(
    table: pa.Table, config: CurateConfig, kept: np.ndarray, carrying: dict[str, np.ndarray], assets: Path
) -> str:
    """Plot each stat with values; ``carrying[reason]`` = rows holding that reason."""
    images = []
    for column in histogram_columns(table):
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
            groups = [
                ("kept", kept),
                (f"rejected: {', '.join(reasons)}", ~kept & by_rule),
                ("rejected: other", ~kept & ~by_rule),
            ]
        else:
            groups = [("kept", kept), ("rejected", ~kept)]
        name = f"hist_{column}.png"
        plot_stat(assets / name, column, values, groups, thresholds)
        images.append(f'<img src="{ASSETS}/{escape(name)}" alt="histogram of {escape(column)}">')
    return "\n".join(images) if images else '<p class="muted">no statistics in this table</p>'


def _sample_note(shown: int, total: int) -> str:
    if shown >= total:
        return ""
    return (f'<p class="muted">Histograms and thumbnails show a deterministic sample of {shown:,} of {total:,} rows '
            f"(report.max_rows); counts are exact.</p>")


def write_report(
    out_dir: str | Path,
    table: pa.Table,
    config: CurateConfig,
    fetch_image: Callable[[dict], bytes | None],
    funnel: list[tuple[str, int]] | None = None,
) -> Path:
    """``funnel``: exact counts of the whole output when ``table`` is a sample of its rows."""
    out_dir = Path(out_dir)
    assets = out_dir / ASSETS
    (assets / THUMBS).mkdir(parents=True, exist_ok=True)
    _clear_assets(assets)
    table = conform(table)

    steps = funnel_steps(table, config)
    first = first_steps(table, steps)
    rows = funnel if funnel is not None else funnel_rows(steps, first)
    parents, codes, names = reason_pairs(table)
    carrying = {names[c]: np.unique(parents[codes == c]) for c in np.unique(codes)}

    plot_funnel(rows, assets / "funnel.png")
    page = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=escape(f"refinery curation report — {out_dir.resolve().name}"),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        side=config.report.thumbnail_side,
        per_reason=config.report.thumbnails_per_reason,
        summary=_summary_html(rows) + _sample_note(table.num_rows, rows[0][1]),
        funnel_table=_funnel_html(rows),
        funnel_png=f"{ASSETS}/funnel.png",
        rules=_rules_html(config),
        histograms=_write_histograms(table, config, first < 0, carrying, assets),
        samples=samples_html(table, config, steps, first, carrying, fetch_image, out_dir, assets / THUMBS),
    )
    path = out_dir / "report.html"
    partial = out_dir / ".report.html.partial"
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    return path
