"""The report's charts as inline SVG: the funnel as horizontal bars, and one histogram per stat.

Contract:
- ``funnel_svg(rows)`` draws the ``funnel()`` list, one bar per entry, top to bottom, each
  with its count.
- ``stat_svg(column, values, groups, thresholds, overlay=False)`` draws a stacked histogram of
  one stat column: ``groups`` are ``(label, mask)`` pairs over ``values`` (non-finite values are
  skipped), each a stack layer (``<rect data-group=i>`` per non-empty bin), with its label and
  count in the legend; with ``overlay=True`` each group's bars instead rise from zero,
  translucent (``fill-opacity`` ``OVERLAY_OPACITY``) and outlined, drawn in group order over
  one another on a y axis up to the largest single bar, so two distributions compare by shape
  (their legend swatches alike); every finite ``Threshold`` is a labelled dashed vertical line
  (``<line data-threshold=value>``) and the x range always includes it. Positive data
  spanning more than ~1.5 decades gets log bins. ``ValueError`` if no value is finite.
Both return one ``<svg>`` element (``data-column`` on a histogram) with every label escaped:
no image files, no plotting library, a few kilobytes each.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

from curate.reasons import DECODE_FAILURES, Reason
from curate.report.text import fmt, truncate

BINS = 40
GROUP_COLOURS = ["#4c9a5b", "#d1495b", "#a0a0a0", "#edae49", "#7a5195"]
LINE_COLOURS = ["#222222", "#00798c", "#8d2d8d", "#c05a00"]
W, H = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 44, 172, 24, 30  # the legend goes in the right margin
FONT = 'font-family="system-ui, sans-serif"'
OVERLAY_OPACITY = 0.45


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str


def step_colour(step: str) -> str:
    """Bar colour of a funnel entry by kind: input, decode failure, rule, duplicate, kept."""
    if step == "rows in":
        return "#5b7db1"
    if step == "kept":
        return "#4c9a5b"
    if step in DECODE_FAILURES:
        return "#d1495b"
    if step in (Reason.EXACT_DUPLICATE, Reason.NEAR_DUPLICATE, Reason.SEMANTIC_DUPLICATE):
        return "#7a5195"
    return "#edae49"


def funnel_svg(rows: list[tuple[str, int]]) -> str:
    label_w, bar_h, gap, width = 128, 14, 4, 520
    top = max((n for _, n in rows), default=0) or 1
    scale = (width - label_w - 56) / top
    height = len(rows) * (bar_h + gap) + 8
    out = [f'<svg class="chart funnel-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT} font-size="11">']
    for i, (name, n) in enumerate(rows):
        y = 4 + i * (bar_h + gap)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 3}" text-anchor="end">{escape(name)}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{n * scale:.1f}" height="{bar_h}" fill="{step_colour(name)}"/>'
                   f'<text x="{label_w + n * scale + 4:.1f}" y="{y + bar_h - 3}" fill="#444">{n:,}</text>')
    out.append("</svg>")
    return "".join(out)


def _use_log(data: np.ndarray) -> bool:
    if data.size < 2 or data.min() < 0:
        return False
    lo, hi = np.percentile(data, [5, 95])
    return bool(lo > 0 and hi / lo > 30)


def _edges(data: np.ndarray, thresholds: list[Threshold], log: bool) -> np.ndarray:
    marks = np.array([t.value for t in thresholds if t.value > 0 or not log])
    points = np.concatenate([data[data > 0] if log else data, marks])
    lo, hi = float(points.min()), float(points.max())
    if log:
        return np.geomspace(lo / 1.2, hi * 1.2, BINS + 1)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.03
    return np.linspace(lo - pad, hi + pad, BINS + 1)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2 or 5 times a power of ten apart) within [lo, hi]."""
    raw = (hi - lo) / max(n, 1)
    if raw <= 0:
        return [lo]
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0 ** k for k in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)]


def stat_svg(column: str, values: np.ndarray, groups: list[tuple[str, np.ndarray]], thresholds: list[Threshold],
             overlay: bool = False) -> str:
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    data = values[finite]
    if data.size == 0:
        raise ValueError(f"{column}: no finite values to plot")
    thresholds = [t for t in thresholds if np.isfinite(t.value)]
    log = _use_log(data)
    edges = _edges(data, thresholds, log)
    # On a log axis values <= 0 (e.g. clarity 0 of a flat image) are drawn in the first bin.
    shown = np.clip(values, edges[0], edges[-1]) if log else values
    layers = [np.histogram(shown[finite & mask], edges)[0] for _, mask in groups]
    total = np.sum(layers, axis=0) if layers else np.zeros(BINS)
    ymax = max(1, int(np.max(layers) if overlay and layers else total.max()))
    pos = np.log10 if log else (lambda v: np.asarray(v, dtype=np.float64))
    x0, x1 = float(pos(edges[0])), float(pos(edges[-1]))
    x = lambda v: LEFT + (float(pos(v)) - x0) / (x1 - x0) * (W - LEFT - RIGHT)  # noqa: E731
    y = lambda n: H - BOTTOM - n / ymax * (H - TOP - BOTTOM)  # noqa: E731
    out = [f'<svg class="chart" data-column="{escape(column)}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" {FONT} font-size="10">',
           f'<text x="{(LEFT + W - RIGHT) / 2}" y="13" text-anchor="middle" font-size="11" font-weight="600">{escape(column)}</text>']
    base = np.zeros(BINS)
    paint = f'fill-opacity="{OVERLAY_OPACITY}" stroke-width="0.8"' if overlay else ""
    for g, (counts, colour) in enumerate(zip(layers, GROUP_COLOURS)):
        for i in np.flatnonzero(counts):
            left, right = x(edges[i]), x(edges[i + 1])
            out.append(f'<rect data-group="{g}" x="{left:.1f}" y="{y(base[i] + counts[i]):.1f}" width="{max(right - left - 0.5, 0.5):.1f}" '
                       f'height="{y(base[i]) - y(base[i] + counts[i]):.1f}" fill="{colour}"'
                       + (f' stroke="{colour}" {paint}/>' if overlay else "/>"))
        if not overlay:
            base = base + counts
    axis_y = H - BOTTOM
    out.append(f'<line x1="{LEFT}" y1="{axis_y}" x2="{W - RIGHT}" y2="{axis_y}" stroke="#444"/>'
               f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{axis_y}" stroke="#444"/>')
    for t in _nice_ticks(0, ymax, 4):
        if t == int(t):
            out.append(f'<text x="{LEFT - 4}" y="{y(t) + 3:.1f}" text-anchor="end">{int(t):,}</text>'
                       f'<line x1="{LEFT - 3}" y1="{y(t):.1f}" x2="{LEFT}" y2="{y(t):.1f}" stroke="#444"/>')
    ticks = _log_ticks(edges[0], edges[-1]) if log else _nice_ticks(edges[0], edges[-1], 6)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{axis_y}" x2="{x(t):.1f}" y2="{axis_y + 3}" stroke="#444"/>'
                   f'<text x="{x(t):.1f}" y="{axis_y + 14}" text-anchor="middle">{escape(fmt(float(t)))}</text>')
    legend = [(label, colour, f"{int(np.count_nonzero(finite & mask)):,}") for (label, mask), colour in zip(groups, GROUP_COLOURS)]
    for i, t in enumerate(thresholds):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        out.append(f'<line data-threshold="{t.value!r}" x1="{x(t.value):.1f}" y1="{TOP}" x2="{x(t.value):.1f}" y2="{axis_y}" '
                   f'stroke="{colour}" stroke-width="1.3" stroke-dasharray="4 3"/>')
        legend.append((t.label, colour, None))
    for i, (label, colour, count) in enumerate(legend):
        ly = TOP + 4 + i * 12
        lx = W - RIGHT + 10
        swatch = f' stroke="{colour}" {paint}' if overlay else ""
        mark = (f'<rect x="{lx}" y="{ly - 7}" width="9" height="9" fill="{colour}"{swatch}/>' if count is not None else
                f'<line x1="{lx}" y1="{ly - 3}" x2="{lx + 10}" y2="{ly - 3}" stroke="{colour}" stroke-width="1.3" stroke-dasharray="3 2"/>')
        text = f"{label} ({count})" if count is not None else label
        out.append(f'{mark}<text x="{lx + 14}" y="{ly + 1}" font-size="9">{escape(truncate(text, 30))}</text>')
    if log:
        out.append(f'<text x="{W - RIGHT + 10}" y="{H - BOTTOM}" font-size="9" fill="#777">log scale</text>')
    out.append("</svg>")
    return "".join(out)
