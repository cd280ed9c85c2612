"""The report's threshold samples: the rows just below and just above each rule's bound.

Contract:
- ``pick_marks(table, config, per)`` makes one ``Mark`` per bound of each rule (a rule with
  both ``min`` and ``max`` gives two) whose column is in ``table`` and numeric: over the rows with a
  finite value, the ``side_count(per)`` rows closest to the bound on each side (ties by id),
  listed in ascending value, and how many rows lie on each side and within ``NEAR`` (10%) of
  the bound. The rejected side holds ``value < min`` or ``value > max``; a value equal to the
  bound passes, as in ``curate.rules``.
- ``marks_html(marks, gallery, sampled, shown)`` renders each as ``<div class="threshold"
  data-column data-bound data-threshold data-reason>`` with ``div.side.below`` and
  ``div.side.above`` holding figures that carry ``data-value`` (the stat, ``repr`` of a float);
  figures around a bound on an OCR column also show the recognised text.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig
from curate.report.figures import figure_html
from curate.report.models_html import OCR_COLUMNS
from curate.report.text import fmt, is_numeric
from curate.report.thumbnails import Gallery

NEAR = 0.10


@dataclass
class Mark:
    column: str
    bound: str  # "min" | "max"
    threshold: float
    reason: str
    below: list[tuple[dict, float]]  # closest rows below the bound, ascending value
    above: list[tuple[dict, float]]  # closest rows above it, ascending value
    counts: tuple[int, int, int, int]  # rows below, above; of them within NEAR of the bound


def side_count(per: int) -> int:
    """Rows shown on each side of a bound: half the per-reason thumbnails, rounded up."""
    return (per + 1) // 2


def _closest(values: np.ndarray, ids: list, idx: np.ndarray, threshold: float, k: int) -> list[int]:
    if k == 0 or idx.size == 0:
        return []
    dist = np.abs(values[idx] - threshold)
    cut = np.partition(dist, min(k, dist.size) - 1)[min(k, dist.size) - 1]
    near = idx[dist <= cut]
    best = sorted(near.tolist(), key=lambda i: (abs(values[i] - threshold), ids[i]))[:k]
    return sorted(best, key=lambda i: (values[i], ids[i]))


def pick_marks(table: pa.Table, config: CurateConfig, per: int) -> list[Mark]:
    k = side_count(per)
    ids = table.column("id").to_pylist() if table.num_rows else []
    marks = []
    for rule in config.rules:
        if rule.column not in table.column_names or not is_numeric(table, rule.column):
            continue
        values = pc.cast(table.column(rule.column), pa.float64()).to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        for bound, threshold in (("min", rule.min), ("max", rule.max)):
            if threshold is None:
                continue
            below = finite & ((values < threshold) if bound == "min" else (values <= threshold))
            above = finite & ~below
            band = NEAR * abs(threshold)
            near = finite & (np.abs(values - threshold) <= band)
            picked = [_closest(values, ids, np.flatnonzero(m), threshold, k) for m in (below, above)]
            rows = table.take(pa.array(picked[0] + picked[1], pa.int64())).to_pylist() if k else []
            with_values = list(zip(rows, [float(values[i]) for i in picked[0] + picked[1]]))
            counts = (int(below.sum()), int(above.sum()), int((below & near).sum()), int((above & near).sum()))
            marks.append(Mark(rule.column, bound, float(threshold), str(rule.reason),
                              with_values[:len(picked[0])], with_values[len(picked[0]):], counts))
    return marks


def _side_html(mark: Mark, side: str, gallery: Gallery) -> str:
    rows = mark.below if side == "below" else mark.above
    rejected = (side == "below") == (mark.bound == "min")
    label = f"just {side}: {'rejected by this rule' if rejected else 'passes this rule'}"
    name = mark.column.removeprefix("stat_")
    figures = "".join(
        figure_html(row, gallery.thumb(row), f"{name} = {fmt(value)}", data={"value": repr(value)},
                    text=mark.column in OCR_COLUMNS)
        for row, value in rows
    ) or '<p class="muted">no rows on this side</p>'
    css = "rejected" if rejected else "passes"
    return f'<div class="side {side} {css}"><div class="label">{escape(label)}</div><div class="grid">{figures}</div></div>'


def marks_html(marks: list[Mark], gallery: Gallery, sampled: bool, shown: bool) -> str:
    """``shown``: whether thumbnails are on (``report.thumbnails_per_reason`` > 0); else counts only."""
    if not marks:
        return '<p class="muted">no rules with measured values</p>'
    scope = "of the report's sample of rows" if sampled else "of all rows"
    out = [f'<p class="muted">For each bound, the rows closest to it on either side; counts are {scope} with a '
           f"value (rows that failed to decode have none).</p>"]
    for m in marks:
        below, above, near_below, near_above = m.counts
        sign = "≥" if m.bound == "min" else "≤"
        out.append(
            f'<div class="threshold" data-column="{escape(m.column)}" data-bound="{m.bound}" '
            f'data-threshold="{m.threshold!r}" data-reason="{escape(m.reason)}">'
            f"<h3>{escape(m.column)} {sign} {fmt(m.threshold)} <span class=\"muted\">else {escape(m.reason)}</span></h3>"
            f'<p class="muted">{below:,} rows below, {above:,} above; within {NEAR:.0%} of the bound: '
            f"{near_below:,} below, {near_above:,} above</p>"
            + (f'<div class="sides">{_side_html(m, "below", gallery)}<div class="bound">{fmt(m.threshold)}</div>'
               f'{_side_html(m, "above", gallery)}</div>' if shown else "")
            + "</div>"
        )
    return "\n".join(out)
